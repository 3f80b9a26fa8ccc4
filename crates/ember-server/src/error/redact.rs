//! File-system paths in messages cut to their last component, so an answer still says which file
//! without saying where it lives on this machine.

/// `text` with every absolute file-system path (`/a/b/c`, `~/a/b`, `C:\a\b`) cut to `…/` plus
/// its last component, so a message still says which file without saying where it lives.
pub fn redact_paths(text: &str) -> String {
    const OPEN: &[char] = &['(', '[', '`', '\'', '"', '=', ':', ','];
    const CLOSE: &[char] = &[')', ']', '`', '\'', '"', ',', ';'];
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || chars[i - 1].is_whitespace() || OPEN.contains(&chars[i - 1]);
        let rest = &chars[i..];
        let starts_path = match rest {
            // `//` is a URL's authority (`https://host/...`), not a path.
            ['/', '/', ..] => false,
            ['/', c, ..] => !c.is_whitespace() && !CLOSE.contains(c),
            ['~', '/', ..] | ['~', '\\', ..] => true,
            [d, ':', '\\', ..] => d.is_ascii_alphabetic(),
            _ => false,
        };
        if !(boundary && starts_path) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let end = rest
            .iter()
            .position(|c| c.is_whitespace() || CLOSE.contains(c))
            .map_or(chars.len(), |n| i + n);
        let token: String = chars[i..end].iter().collect();
        let body = token.trim_end_matches(['/', '\\']);
        let last = body.rsplit(['/', '\\']).next().unwrap_or("");
        out.push_str("…/");
        out.push_str(last);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_to_their_last_component() {
        let cases = [
            (
                "cannot read /home/u/.cache/ember/m/model.safetensors: No such file",
                "cannot read …/model.safetensors: No such file",
            ),
            (
                "tried:\n  - EMBER_MODELS_DIR: /srv/models/x\n  - Hugging Face cache /root/.cache/huggingface/hub (a/b@main)",
                "tried:\n  - EMBER_MODELS_DIR: …/x\n  - Hugging Face cache …/hub (a/b@main)",
            ),
            ("model directory `/a/b/` has no x", "model directory `…/b` has no x"),
            ("in ~/models/e5 and C:\\Users\\me\\m", "in …/e5 and …/m"),
            ("no paths: a/b, 3/4 and / alone", "no paths: a/b, 3/4 and / alone"),
            (
                "Hub download from https://huggingface.co: failed",
                "Hub download from https://huggingface.co: failed",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_paths(text), want, "{text}");
        }
    }
}
