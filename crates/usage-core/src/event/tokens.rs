//! Flex token amounts, exact to a thousandth of a token.

use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A non-negative amount of Flex tokens, held as whole thousandths so that
/// sums are exact. On the wire it is a JSON number (`7`, `2.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tokens(u64);

/// Why a number is not a token amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("token amount must be a finite, non-negative number, got {0}")]
    OutOfRange(String),
    #[error("token amount has more than 3 decimal places: {0}")]
    TooPrecise(String),
}

impl Tokens {
    pub const ZERO: Tokens = Tokens(0);

    pub const fn from_millis(millis: u64) -> Tokens {
        Tokens(millis)
    }

    pub const fn from_whole(tokens: u64) -> Tokens {
        Tokens(tokens * 1000)
    }

    /// Thousandths of a token.
    pub const fn millis(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Tokens) -> Option<Tokens> {
        self.0.checked_add(other.0).map(Tokens)
    }

    /// Parses a JSON number's text (`7`, `2.5`, `0.125`).
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let out_of_range = || TokensError::OutOfRange(text.to_owned());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(out_of_range());
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(out_of_range());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 3 {
            return Err(TokensError::TooPrecise(text.to_owned()));
        }
        let whole: u64 = whole.parse().map_err(|_| out_of_range())?;
        let mut millis_part = 0u64;
        for (i, b) in frac.bytes().enumerate() {
            millis_part += u64::from(b - b'0') * 10u64.pow(2 - i as u32);
        }
        whole
            .checked_mul(1000)
            .and_then(|m| m.checked_add(millis_part))
            .map(Tokens)
            .ok_or_else(out_of_range)
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Tokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (whole, thousandths) = (self.0 / 1000, self.0 % 1000);
        if thousandths == 0 {
            s.serialize_u64(whole)
        } else {
            // Exact for every thousandth below 2^53 / 1000 tokens.
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tokens, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        Tokens::parse(&number.to_string()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exact_thousandths() {
        for (text, millis, shown) in [
            ("7", 7000, "7"),
            ("2.5", 2500, "2.5"),
            ("0.125", 125, "0.125"),
            ("10.0", 10000, "10"),
        ] {
            let t = Tokens::parse(text).expect("valid amount");
            assert_eq!(t.millis(), millis, "{text}");
            assert_eq!(t.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn refuses_negative_fractional_thousandths_and_exponents() {
        assert!(matches!(
            Tokens::parse("-1"),
            Err(TokensError::OutOfRange(_))
        ));
        assert!(matches!(
            Tokens::parse("0.0001"),
            Err(TokensError::TooPrecise(_))
        ));
        assert!(matches!(
            Tokens::parse("1e3"),
            Err(TokensError::OutOfRange(_))
        ));
    }
}
