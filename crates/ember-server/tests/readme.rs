//! The README's table of server flags is the one `--help` is made from: every flag, its
//! variable, its default and its help, in order.

use std::path::PathBuf;

#[test]
fn the_readme_flag_table_matches_the_flag_definitions() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- flags:start -->\n", "<!-- flags:end -->");
    let from = readme.find(start).expect("README has a flags:start marker") + start.len();
    let to = readme[from..]
        .find(end)
        .expect("README has a flags:end marker")
        + from;
    let want = ember_server::config::flags_table();
    assert!(
        readme[from..to] == want,
        "the README's flag table is stale; put this between the markers:\n{want}"
    );
}
