//! Keep-alive with Ollama's meaning: how long a model stays loaded after its last use.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::Error;

/// How long an idle model stays loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepAlive {
    /// Never unloaded for idleness (`-1`, or any negative duration).
    #[default]
    Forever,
    /// Unloaded this long after its last use; zero unloads right after the request.
    For(Duration),
}

impl KeepAlive {
    /// From seconds as Ollama takes them: negative is forever.
    pub fn from_secs_f64(secs: f64) -> Result<Self, Error> {
        if secs.is_nan() {
            return Err(Error::invalid(
                "keep_alive",
                "must be a number of seconds or a duration like \"5m\"",
            ));
        }
        if secs < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Duration::try_from_secs_f64(secs)
            .map(KeepAlive::For)
            .map_err(|_| Error::invalid("keep_alive", format!("{secs} seconds is out of range")))
    }

    /// The duration, or `None` for forever.
    pub fn duration(self) -> Option<Duration> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(d),
        }
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("-1"),
            KeepAlive::For(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeepAlive::Forever => s.serialize_i64(-1),
            KeepAlive::For(d) => s.serialize_f64(d.as_secs_f64()),
        }
    }
}

impl FromStr for KeepAlive {
    type Err = Error;

    /// Go-style durations as Ollama accepts them (`"5m"`, `"1h30m"`, `"10s"`, `"250ms"`, `"-1"`,
    /// `"-1m"`), or a bare number of seconds.
    fn from_str(s: &str) -> Result<Self, Error> {
        let text = s.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Self::from_secs_f64(secs);
        }
        let bad = || {
            Error::invalid(
                "keep_alive",
                format!(
                    "`{s}` is not a duration; use seconds or forms like \"5m\", \"1h30m\", \"-1\""
                ),
            )
        };
        let (negative, mut rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let value: f64 = rest[..split].parse().map_err(|_| bad())?;
            rest = &rest[split..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += value * factor;
            rest = &rest[unit_len..];
        }
        if negative {
            return Ok(KeepAlive::Forever);
        }
        Self::from_secs_f64(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ollama_forms() {
        let d = |s: &str| s.parse::<KeepAlive>().unwrap();
        assert_eq!(d("5m"), KeepAlive::For(Duration::from_secs(300)));
        assert_eq!(d("1h30m"), KeepAlive::For(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), KeepAlive::For(Duration::from_millis(250)));
        assert_eq!(d("0"), KeepAlive::For(Duration::ZERO));
        assert_eq!(d("30"), KeepAlive::For(Duration::from_secs(30)));
        assert_eq!(d("-1"), KeepAlive::Forever);
        assert_eq!(d("-1m"), KeepAlive::Forever);
        for bad in ["", "5 minutes", "m", "1x", "--1"] {
            let e = bad.parse::<KeepAlive>().unwrap_err().to_string();
            assert!(e.contains("keep_alive"), "{bad}: {e}");
        }
    }
}
