//! Typed YAML configuration files.
//!
//! Every binary loads its `--config` file through [`load`]: the YAML is deserialized straight
//! into the component's config struct (unknown keys refused with `#[serde(deny_unknown_fields)]`),
//! then the struct's [`Validate`] implementation checks values against each other. Whatever goes
//! wrong becomes one [`ConfigError`] line naming the file, the key and what was expected:
//!
//! ```text
//! conf/origin.yaml: llhls.part_target: expected seconds between 0.1 and 2, got 5 (line 12, column 16)
//! ```
//!
//! The YAML parser is `serde-saphyr`: pure Rust with `unsafe` forbidden, fuzzed, panic-free on
//! malformed input, with budgets against resource exhaustion, and actively maintained (unlike
//! `serde_yaml`, which is archived upstream).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A value that failed validation: the dotted key, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted path of the key, e.g. `transcoder.ladder[1].height`.
    pub key: String,
    /// What the key must hold, phrased to complete "expected ...".
    pub expected: String,
    /// The value found, as the user would write it.
    pub got: String,
}

impl Invalid {
    /// An invalid value at `key`.
    pub fn new(
        key: impl Into<String>,
        expected: impl Into<String>,
        got: impl fmt::Display,
    ) -> Self {
        Self {
            key: key.into(),
            expected: expected.into(),
            got: got.to_string(),
        }
    }
}

/// Cross-field checks run after a config file parsed.
pub trait Validate {
    /// Returns the first invalid value, if any.
    fn validate(&self) -> Result<(), Invalid>;
}

/// Why a config file could not be used. Its `Display` is a single line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The offending key, when one is known.
    pub key: Option<String>,
    /// What went wrong.
    pub message: String,
    /// Line and column in the file, when known.
    pub position: Option<(u64, u64)>,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut line = format!("{}: ", self.file.display());
        if let Some(key) = &self.key {
            line.push_str(key);
            line.push_str(": ");
        }
        line.push_str(&self.message);
        if let Some((l, c)) = self.position {
            line.push_str(&format!(" (line {l}, column {c})"));
        }
        line
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: None,
        message: format!("cannot read the config file: {e}"),
        position: None,
    })?;
    from_str(path, &text)
}

/// Loads the file at `path` when one is given; otherwise takes every default (still validated).
pub fn load_or_default<T: DeserializeOwned + Validate + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    match path {
        Some(p) => load(p),
        None => {
            let value = T::default();
            value.validate().map_err(|invalid| ConfigError {
                file: PathBuf::from("(defaults)"),
                key: Some(invalid.key),
                message: format!("expected {}, got {}", invalid.expected, invalid.got),
                position: None,
            })?;
            Ok(value)
        }
    }
}

/// Parses and validates config text; `file` names it in errors.
pub fn from_str<T: DeserializeOwned + Validate>(file: &Path, text: &str) -> Result<T, ConfigError> {
    // A file of comments only is an empty mapping: every key takes its default.
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    let text = if has_content { text } else { "{}" };
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        let mut track = serde_path_to_error::Track::new();
        let result = T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
        path = track.path().to_string();
        result
    });
    let value = parsed.map_err(|e| {
        let position = e.location().map(|l| (l.line(), l.column()));
        let message = strip_position(&e.without_snippet().to_string());
        ConfigError {
            file: file.to_path_buf(),
            key: (!path.is_empty() && path != ".").then(|| path.clone()),
            message,
            position,
        }
    })?;
    value.validate().map_err(|invalid| ConfigError {
        file: file.to_path_buf(),
        key: Some(invalid.key),
        message: format!("expected {}, got {}", invalid.expected, invalid.got),
        position: None,
    })?;
    Ok(value)
}

/// The parser appends " at line L, column C"; we print the position once, our way.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Checks that `value` lies in `min..=max`.
pub fn check_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
    unit: &str,
) -> Result<(), Invalid> {
    if value < min || value > max {
        return Err(Invalid::new(
            key,
            format!("{unit} between {min} and {max}"),
            value,
        ));
    }
    Ok(())
}

/// Checks that a name is usable in a URL path segment: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn check_name(key: &str, value: &str) -> Result<(), Invalid> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            "1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
            format!("{value:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        part_target: f64,
        names: Vec<String>,
    }

    impl Default for Limits {
        fn default() -> Self {
            Self {
                part_target: 0.5,
                names: vec![],
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        limits: Limits,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), Invalid> {
            check_range(
                "limits.part_target",
                self.limits.part_target,
                0.1,
                2.0,
                "seconds",
            )?;
            for (i, n) in self.limits.names.iter().enumerate() {
                check_name(&format!("limits.names[{i}]"), n)?;
            }
            Ok(())
        }
    }

    fn parse(text: &str) -> Result<Sample, ConfigError> {
        from_str(Path::new("conf/test.yaml"), text)
    }

    #[test]
    fn an_empty_or_comment_only_file_takes_every_default() {
        assert_eq!(parse("").expect("empty"), Sample::default());
        assert_eq!(parse("# nothing\n\n").expect("comments"), Sample::default());
    }

    #[test]
    fn an_unknown_key_names_the_file_the_key_and_the_valid_keys() {
        let err = parse("limits:\n  part_target: 0.3\n  part_targte: 1\n").expect_err("unknown");
        let line = err.to_string();
        assert_eq!(err.key.as_deref(), Some("limits.part_targte"));
        assert!(
            line.starts_with("conf/test.yaml: limits.part_targte: unknown field"),
            "{line}"
        );
        assert!(line.contains("part_target, names"), "{line}");
        assert!(line.contains("line 3"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = parse("limits:\n  part_target: fast\n").expect_err("not a number");
        assert_eq!(err.key.as_deref(), Some("limits.part_target"));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn a_value_out_of_range_says_what_was_expected() {
        let err = parse("limits:\n  part_target: 5\n").expect_err("too long");
        assert_eq!(
            err.to_string(),
            "conf/test.yaml: limits.part_target: expected seconds between 0.1 and 2, got 5"
        );
        let err = parse("limits:\n  names: [ok, '../x']\n").expect_err("bad name");
        assert!(err.to_string().contains("limits.names[1]"), "{err}");
    }

    #[test]
    fn a_missing_file_is_one_clear_line() {
        let err = load::<Sample>(Path::new("/nonexistent/corral.yaml")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/corral.yaml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn malformed_yaml_is_an_error_with_a_position() {
        let err = parse("limits: [\n").expect_err("malformed");
        assert!(err.position.is_some(), "{err}");
    }
}
