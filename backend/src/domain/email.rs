use std::fmt;

use validator::ValidateEmail;

/// An email address, trimmed, lower-cased and checked, its domain in ASCII: an internationalised
/// domain is stored and compared in its IDNA (punycode) form, so `ada@exämple.com` and
/// `ada@xn--exmple-cua.com`, one mailbox, are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("is required");
        }
        if email.len() > 4 * 254 {
            return Err("must be at most 254 characters");
        }
        let email = Self::normalise(email).ok_or("is not a valid email address")?;
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        if !email.validate_email() {
            return Err("is not a valid email address");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form an account's address is stored and looked up in: the parsed address, or for text
    /// that does not parse (an address stored before a rule existed), trimmed and lower-cased.
    /// Every lookup by email goes through it, so `ada@Exämple.com` finds `ada@xn--exmple-cua.com`.
    pub fn lookup_key(raw: &str) -> String {
        Self::parse(raw).map(|e| e.0).unwrap_or_else(|_| raw.trim().to_lowercase())
    }

    /// The local part lower-cased, the domain through IDNA's UTS #46 mapping (which also lower-
    /// cases it) to ASCII; `None` when the domain is not a valid IDNA name.
    pub fn normalise(email: &str) -> Option<String> {
        let (local, domain) = email.rsplit_once('@')?;
        let domain = idna::domain_to_ascii(domain).ok()?;
        Some(format!("{}@{domain}", local.to_lowercase()))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert!(Email::parse("not-an-email").is_err());
        assert!(Email::parse("").is_err());
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(260))).is_err());
    }

    #[test]
    fn internationalised_domains_are_stored_in_ascii() {
        let unicode = Email::parse("Ada@Exämple.com").unwrap();
        assert_eq!(unicode.as_str(), "ada@xn--exmple-cua.com");
        assert_eq!(Email::parse("ada@XN--EXMPLE-CUA.com").unwrap(), unicode);
        // Full-width and other UTS #46 mappings end in the same name.
        assert_eq!(Email::parse("ada@ＥＸＡＭＰＬＥ.com").unwrap().as_str(), "ada@example.com");
        assert!(Email::parse("ada@exa mple.com").is_err());
        assert!(Email::parse("ada@").is_err());
    }
}
