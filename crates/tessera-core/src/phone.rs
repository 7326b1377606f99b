//! Phone numbers for the `sms` connection: E.164 only (`^\+[0-9]{1,15}$`, as Auth0 checks),
//! then possible and valid for their country (libphonenumber's rules).

use std::fmt;

/// A checked E.164 phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    country_code: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneError {
    /// Not `+` followed by 1 to 15 digits.
    NotE164,
    /// E.164 in form, but no such number exists for its country.
    Invalid,
}

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<PhoneNumber, PhoneError> {
        let digits = raw.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::NotE164);
        }
        let parsed = phonenumber::parse(None, raw).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(PhoneNumber {
            e164,
            country_code: parsed.code().value(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code (`1`, `44`, …).
    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The number without its last four digits: what per-prefix limits count on (a block of
    /// numbers an SMS-pumping fraud rents together).
    pub fn prefix(&self) -> &str {
        let cut = self.e164.len().saturating_sub(4).max(2);
        &self.e164[..cut]
    }

    /// For logs: the country code and the last two digits only.
    pub fn masked(&self) -> String {
        let tail = &self.e164[self.e164.len().saturating_sub(2)..];
        format!("+{}…{tail}", self.country_code)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_then_validity() {
        let n = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(n.as_str(), "+14155552671");
        assert_eq!(n.country_code(), 1);
        assert_eq!(n.prefix(), "+1415555");
        assert_eq!(n.masked(), "+1…71");
        assert_eq!(
            PhoneNumber::parse("+447911123456").unwrap().country_code(),
            44
        );
        for bad in [
            "14155552671",
            "+",
            "+1 415 555 2671",
            "+1415555267a",
            "+1234567890123456",
            " +14155552671",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::NotE164), "{bad}");
        }
        // E.164 in form, but not a real number.
        for bad in ["+10000000000", "+999123", "+4412"] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::Invalid), "{bad}");
        }
    }
}
