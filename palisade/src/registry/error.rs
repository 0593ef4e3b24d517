//! What can go wrong building a registry, or asking it for an instance.

use palisade_core::ConfigError;
use std::error::Error;
use std::fmt;

/// A setting of a configuration file that a layer refused, named by its path in the file.
///
/// The path is `<section>.<instance>.<field>` for an instance
/// (`circuit_breaker.inventory.failure_rate_threshold`) and
/// `<section>.configs.default.<field>` for the shared default. Its
/// [`source`](Error::source) is the layer's [`ConfigError`], when a layer refused the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    path: String,
    problem: String,
    config: Option<ConfigError>,
}

impl RegistryError {
    /// The layer's `error`, located at `<section>.<instance>` in the file.
    pub(crate) fn config(section: &str, instance: &str, error: ConfigError) -> Self {
        RegistryError {
            path: join(&[section, instance, error.field()]),
            problem: error.problem().to_owned(),
            config: Some(error),
        }
    }

    /// A problem of the file itself (not of a layer's value) at `path`.
    pub(crate) fn file(path: &[&str], problem: impl Into<String>) -> Self {
        RegistryError {
            path: join(path),
            problem: problem.into(),
            config: None,
        }
    }

    /// The refused field: the last part of the path.
    pub(crate) fn field(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or_default()
    }

    /// The same error, found building `instance` but caused by a value it inherited: its path
    /// names `<section>.configs.default` instead.
    pub(crate) fn in_default(mut self, section: &str, instance: &str) -> Self {
        let built_as = format!("{section}.{instance}.");
        if let Some(rest) = self.path.strip_prefix(&built_as) {
            self.path = format!("{section}.configs.default.{rest}");
        }
        self
    }

    /// Where in the file: `circuit_breaker.inventory.failure_rate_threshold`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it (lowercase, no trailing period).
    #[must_use]
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The layer's own error, when a layer's builder refused the value.
    #[must_use]
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.config.as_ref()
    }
}

fn join(parts: &[&str]) -> String {
    parts.join(".")
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

impl Error for RegistryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.config.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A name asked of a [`Registry`](super::Registry) that its file does not configure.
///
/// A registry hands out only the instances its file names, so a typo in code
/// (`registry.circuit_breaker("inventroy")`) is an error instead of a silently unconfigured
/// breaker. To get the section's defaults for a name, list it with no fields:
/// `[circuit_breaker.instances.inventory]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownInstance {
    /// The section asked: `circuit_breaker`, `bulkhead`, `rate_limiter`, `retry_policy` or
    /// `retry_budget`.
    pub section: &'static str,
    /// The name asked for.
    pub name: String,
}

impl fmt::Display for UnknownInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no {section} named `{name}` is configured (add `[{section}.instances.{name}]`)",
            section = self.section,
            name = self.name
        )
    }
}

impl Error for UnknownInstance {}
