//! How log lines are written.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event: time, level, target, message, fields.
    /// The default.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`
    /// with `message` and every structured field), for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = Error;

    /// `human` (or `text`) and `json`, in any case.
    fn from_str(text: &str) -> Result<Self, Error> {
        match text.to_ascii_lowercase().as_str() {
            "human" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(Error::UnknownLogFormat(text.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Human => "human",
            Self::Json => "json",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_their_names() {
        assert_eq!("human".parse::<LogFormat>().unwrap(), LogFormat::Human);
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::Json.to_string(), "json");
        let err = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(err.contains("yaml"), "{err}");
    }
}
