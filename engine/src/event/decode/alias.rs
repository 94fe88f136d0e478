//! Event aliases: rindexer's manifest can name an event `alias: X`, and then publishes it
//! with `event_name` X. `--event-alias X=Deposited` maps it back.

use std::collections::HashMap;

/// Alias → event name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aliases(HashMap<String, String>);

impl Aliases {
    /// Parse `ALIAS=EventName` pairs.
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Aliases, String> {
        let mut map = HashMap::new();
        for pair in pairs {
            let pair = pair.as_ref().trim();
            let Some((alias, name)) = pair.split_once('=').map(|(a, n)| (a.trim(), n.trim())) else {
                return Err(format!("event alias `{pair}` is not ALIAS=EventName"));
            };
            if alias.is_empty() || name.is_empty() {
                return Err(format!("event alias `{pair}` has an empty side"));
            }
            if let Some(previous) = map.insert(alias.to_owned(), name.to_owned()) {
                if previous != name {
                    return Err(format!("event alias `{alias}` maps to both {previous} and {name}"));
                }
            }
        }
        Ok(Aliases(map))
    }

    /// The event name `name` stands for.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.0.get(name).map_or(name, String::as_str)
    }
}
