//! The configuration file under the command line.
//!
//! Every option of a binary is a `clap` argument with a long name, an
//! environment variable and a default. A TOML file (`--config FILE` or
//! `USAGE_CONFIG`) may set any of them by long name, flat or in tables:
//!
//! ```toml
//! kafka-brokers = "127.0.0.1:9092"
//! [clickhouse]
//! url = "http://127.0.0.1:8123"   # the option --clickhouse-url
//! ```
//!
//! Precedence, highest first: command line, environment, file, default.
//! The file's values are handed to `clap` as if typed on the command line,
//! but only for options the command line and environment left unset, so one
//! parser validates every source the same way. Unknown keys are an error.

use clap::{parser::ValueSource, ArgAction, ArgMatches, Command, Parser};
use std::{ffi::OsString, path::PathBuf};

/// The id of the global `--config` argument each binary declares.
pub const CONFIG_ARG: &str = "config";

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: unknown option {key:?} for `{command}` (see --help)")]
    UnknownKey {
        path: PathBuf,
        key: String,
        command: String,
    },
    #[error(
        "config file {path}: option {key:?} must be a string, number, boolean or list of them"
    )]
    BadValue { path: PathBuf, key: String },
}

/// Parses the process's arguments; prints help/usage errors and exits like clap does.
pub fn parse<T: Parser>() -> T {
    match parse_from(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(other) => {
            eprintln!("error: {other}");
            std::process::exit(2)
        }
    }
}

/// Parses `args` (the first is the program name), merging the config file.
pub fn parse_from<T, I, A>(args: I) -> Result<T, ConfigError>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = T::command();
    let matches = command.clone().try_get_matches_from(&args)?;
    let mut chain = Vec::new();
    let (leaf_command, leaf_matches) = leaf(&command, &matches, &mut chain);
    let config_path = leaf_matches
        .try_get_one::<PathBuf>(CONFIG_ARG)
        .ok()
        .flatten()
        .or_else(|| matches.try_get_one::<PathBuf>(CONFIG_ARG).ok().flatten())
        .cloned();
    let Some(path) = config_path else {
        return Ok(T::from_arg_matches_mut(&mut matches.clone())?);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Toml {
        path: path.clone(),
        source,
    })?;
    let mut entries = Vec::new();
    flatten("", &table, &path, &mut entries)?;
    for (key, values) in entries {
        let arg = leaf_command
            .get_arguments()
            .chain(
                chain
                    .iter()
                    .flat_map(|c| c.get_arguments().filter(|a| a.is_global_set())),
            )
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.clone(),
                key: key.clone(),
                command: leaf_command.get_name().to_owned(),
            })?;
        let id = arg.get_id().as_str();
        let already_set = matches!(
            leaf_matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if already_set {
            continue;
        }
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let on = values.first().map(String::as_str) == Some("true");
                let wanted = matches!(arg.get_action(), ArgAction::SetTrue) == on;
                if wanted {
                    args.push(format!("--{key}").into());
                }
            }
            _ => {
                for value in values {
                    args.push(format!("--{key}={value}").into());
                }
            }
        }
    }
    Ok(T::try_parse_from(args)?)
}

/// The deepest subcommand chosen, with its matches; `ancestors` gets the commands above it.
fn leaf<'a>(
    command: &'a Command,
    matches: &'a ArgMatches,
    ancestors: &mut Vec<&'a Command>,
) -> (&'a Command, &'a ArgMatches) {
    if let Some((name, sub_matches)) = matches.subcommand() {
        if let Some(sub) = command.find_subcommand(name) {
            ancestors.push(command);
            return leaf(sub, sub_matches, ancestors);
        }
    }
    (command, matches)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    path: &std::path::Path,
    out: &mut Vec<(String, Vec<String>)>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let key = key.replace('_', "-");
        let full = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}-{key}")
        };
        let bad = || ConfigError::BadValue {
            path: path.to_owned(),
            key: full.clone(),
        };
        let values = match value {
            toml::Value::Table(inner) => {
                flatten(&full, inner, path, out)?;
                continue;
            }
            toml::Value::Array(items) => items
                .iter()
                .map(|item| scalar(item).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?,
            other => vec![scalar(other).ok_or_else(bad)?],
        };
        out.push((full, values));
    }
    Ok(())
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Subcommand};
    use std::io::Write;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true)]
        log_json: bool,
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        Run(RunArgs),
    }

    #[derive(Debug, Args)]
    struct RunArgs {
        #[arg(
            long,
            env = "CONFIG_TEST_URL_NEVER_SET",
            default_value = "http://default"
        )]
        clickhouse_url: String,
        #[arg(long, default_value_t = 10)]
        batch_rows: u32,
        #[arg(long)]
        json_logs: bool,
        #[arg(long, default_value = "a")]
        topic: String,
    }

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::write(text)
    }

    mod tempfile_path {
        use super::*;
        pub(super) struct TempPath(pub(super) PathBuf);
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        pub(super) fn write(text: &str) -> TempPath {
            let path = std::env::temp_dir().join(format!(
                "usage-config-test-{}-{:?}.toml",
                std::process::id(),
                std::thread::current().id()
            ));
            let mut f = std::fs::File::create(&path).expect("temp file");
            f.write_all(text.as_bytes()).expect("write");
            TempPath(path)
        }
    }

    fn run(args: &[&str]) -> RunArgs {
        let cli: Cli = parse_from(args.iter().copied()).expect("parses");
        let Cmd::Run(run) = cli.command;
        run
    }

    #[test]
    fn file_fills_what_the_command_line_left_unset() {
        let f = file(
            "batch_rows = 500\njson-logs = true\nlog-json = true\n[clickhouse]\nurl = \"http://file\"\n",
        );
        let path = f.0.to_str().expect("utf-8 path");
        let cli: Cli =
            parse_from(["x", "run", "--config", path, "--batch-rows", "7"]).expect("parses");
        assert!(cli.log_json, "global options can be set in the file too");
        let Cmd::Run(r) = cli.command;
        assert_eq!(r.clickhouse_url, "http://file");
        assert_eq!(r.batch_rows, 7, "the command line wins over the file");
        assert!(r.json_logs);
        assert_eq!(r.topic, "a", "defaults stay where neither sets a value");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let f = file("batch-rowz = 1\n");
        let path = f.0.to_str().expect("utf-8 path");
        let err = parse_from::<Cli, _, _>(["x", "run", "--config", path]).expect_err("unknown key");
        assert!(err.to_string().contains("batch-rowz"), "{err}");
    }

    #[test]
    fn without_a_file_it_is_plain_clap() {
        let r = run(&["x", "run"]);
        assert_eq!(r.batch_rows, 10);
    }
}
