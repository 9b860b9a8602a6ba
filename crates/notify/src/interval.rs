//! Durations on the command line: `90s`, `15m`, `1h`, `1d`, or plain seconds.

use std::str::FromStr;
use std::time::Duration;

/// A positive duration given as a number with an optional unit (s, m, h, d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 15m, 1h, 1d)"))?;
        let scale = match unit.trim() {
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            other => return Err(format!("unknown unit {other:?} in {s:?} (use s, m, h or d)")),
        };
        let seconds = value * scale;
        if !(seconds > 0.0 && seconds.is_finite()) {
            return Err(format!("{s:?}: the duration must be more than zero"));
        }
        Ok(Interval(Duration::from_secs_f64(seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_understood() {
        assert_eq!("90".parse(), Ok(Interval(Duration::from_secs(90))));
        assert_eq!("15m".parse(), Ok(Interval(Duration::from_secs(900))));
        assert_eq!("1.5h".parse(), Ok(Interval(Duration::from_secs(5400))));
        assert_eq!("1d".parse(), Ok(Interval(Duration::from_secs(86_400))));
        assert!("0s".parse::<Interval>().is_err());
        assert!("5 weeks".parse::<Interval>().is_err());
    }
}
