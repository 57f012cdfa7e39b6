//! Flink-style durations: `60000` (milliseconds), `500 ms`, `5 s`, `1min`, `2 h`, `1 d`.

use std::fmt;
use std::time::Duration;

/// What a duration value may look like; ends every duration error.
pub(crate) const DURATION_FORMS: &str = "a duration: a whole number of milliseconds (60000) or \
     a whole number and a unit (500 ms, 5 s, 5s, 1 min, 2 h, 1 d); units: ns, us, µs, ms, s, m, \
     min, h, d or their names (nanos, micros, millis, secs, seconds, minutes, hours, days)";

/// A duration that keeps the text it was written as (`"5 s"`), so that `keel config show`
/// and error messages print what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfDuration {
    /// The parsed value.
    pub duration: Duration,
    /// The text as written (trimmed).
    pub text: String,
}

impl ConfDuration {
    /// Parses `text` with [`parse_duration`] and keeps the trimmed text.
    ///
    /// # Errors
    /// The message of [`parse_duration`].
    pub fn parse(text: &str) -> Result<ConfDuration, String> {
        let duration = parse_duration(text)?;
        Ok(ConfDuration { duration, text: text.trim().to_owned() })
    }
}

impl fmt::Display for ConfDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a duration the way Flink's `TimeUtils.parseDuration` does.
///
/// A plain whole number is milliseconds (`60000`); otherwise a whole number followed, with
/// or without spaces, by a case-insensitive unit:
///
/// | unit | accepted spellings |
/// | --- | --- |
/// | nanoseconds | `ns`, `nano`, `nanos`, `nanosecond`, `nanoseconds` |
/// | microseconds | `us`, `µs`, `micro`, `micros`, `microsecond`, `microseconds` |
/// | milliseconds | `ms`, `milli`, `millis`, `millisecond`, `milliseconds` |
/// | seconds | `s`, `sec`, `secs`, `second`, `seconds` |
/// | minutes | `m`, `min`, `minute`, `minutes` |
/// | hours | `h`, `hour`, `hours` |
/// | days | `d`, `day`, `days` |
///
/// # Errors
/// A message naming the problem (empty, negative, fractional, unknown unit, too large)
/// followed by the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_parts(text).map_err(|problem| format!("{problem}; expected {DURATION_FORMS}"))
}

/// [`parse_duration`] without the list of accepted forms, for [`ConfigError`] which keeps
/// problem and expectation apart.
///
/// [`ConfigError`]: crate::ConfigError
pub(crate) fn parse_parts(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty value".to_owned());
    }
    if trimmed.starts_with('-') {
        return Err("negative durations are not allowed".to_owned());
    }
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, rest) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err("a duration starts with a whole number".to_owned());
    }
    if rest.starts_with(['.', ',']) {
        return Err("fractions are not allowed; use a smaller unit (1500 ms, not 1.5 s)".to_owned());
    }
    let too_large = || "too large".to_owned();
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let unit = rest.trim_start().to_lowercase();
    let seconds_per = |factor: u64| number.checked_mul(factor).map(Duration::from_secs).ok_or_else(too_large);
    match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => Ok(Duration::from_millis(number)),
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => Ok(Duration::from_nanos(number)),
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU look the same; accept both.
        "us" | "µs" | "μs" | "micro" | "micros" | "microsecond" | "microseconds" => Ok(Duration::from_micros(number)),
        "s" | "sec" | "secs" | "second" | "seconds" => seconds_per(1),
        "m" | "min" | "minute" | "minutes" => seconds_per(60),
        "h" | "hour" | "hours" => seconds_per(60 * 60),
        "d" | "day" | "days" => seconds_per(24 * 60 * 60),
        _ => Err(format!("unknown time unit '{}'", rest.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn plain_integer_is_milliseconds() {
        assert_eq!(parse_duration("60000"), Ok(ms(60_000)));
        assert_eq!(parse_duration("0"), Ok(ms(0)));
        assert_eq!(parse_duration("  15000  "), Ok(ms(15_000)));
    }

    #[test]
    fn every_unit_spelling() {
        let cases: &[(&[&str], Duration)] = &[
            (&["ns", "nano", "nanos", "nanosecond", "nanoseconds"], Duration::from_nanos(7)),
            (&["us", "µs", "μs", "micro", "micros", "microsecond", "microseconds"], Duration::from_micros(7)),
            (&["ms", "milli", "millis", "millisecond", "milliseconds"], ms(7)),
            (&["s", "sec", "secs", "second", "seconds"], Duration::from_secs(7)),
            (&["m", "min", "minute", "minutes"], Duration::from_secs(7 * 60)),
            (&["h", "hour", "hours"], Duration::from_secs(7 * 3600)),
            (&["d", "day", "days"], Duration::from_secs(7 * 86_400)),
        ];
        for (units, expected) in cases {
            for unit in *units {
                for text in [
                    format!("7{unit}"),
                    format!("7 {unit}"),
                    format!("7   {unit}"),
                    format!("7{}", unit.to_uppercase()),
                    format!(" 7 {} ", unit.to_uppercase()),
                ] {
                    assert_eq!(parse_duration(&text), Ok(*expected), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn brief_examples() {
        assert_eq!(parse_duration("500 ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5 s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("1 min"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1min"), Ok(ms(60_000)));
        assert_eq!(parse_duration("2 h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("1 d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("1 MIN"), Ok(ms(60_000)));
    }

    #[test]
    fn rejects_with_reason_and_forms() {
        let err = |text: &str| parse_parts(text).unwrap_err();
        assert_eq!(err(""), "empty value");
        assert_eq!(err("   "), "empty value");
        assert_eq!(err("-5 s"), "negative durations are not allowed");
        assert_eq!(err("s"), "a duration starts with a whole number");
        assert_eq!(err("five seconds"), "a duration starts with a whole number");
        assert_eq!(err("5 sx"), "unknown time unit 'sx'");
        assert_eq!(err("5 s 3"), "unknown time unit 's 3'");
        assert_eq!(err("1.5 s"), "fractions are not allowed; use a smaller unit (1500 ms, not 1.5 s)");
        assert_eq!(err("99999999999999999999"), "too large");
        assert_eq!(err("18446744073709551615 d"), "too large");
        assert_eq!(parse_duration("5 sx").unwrap_err(), format!("unknown time unit 'sx'; expected {DURATION_FORMS}"));
    }

    #[test]
    fn conf_duration_keeps_text() {
        let d = ConfDuration::parse(" 5 s ").unwrap();
        assert_eq!(d.duration, ms(5_000));
        assert_eq!(d.text, "5 s");
        assert_eq!(d.to_string(), "5 s");
    }
}
