//! age key pairs as the policy reads them: a recipients file and an identity file.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;

/// An age key pair as files: the recipients file (public key, with a comment) and the
/// identity file (as `age-keygen` writes it).
pub struct Keys {
    pub recipients: PathBuf,
    pub identity: PathBuf,
    pub secret: String,
    pub public: String,
}

pub fn keys(dir: &Path) -> Keys {
    let (secret, public) = key_pair();
    let recipients = dir.join("recipients.txt");
    std::fs::write(&recipients, format!("# backups of the cache\n{public}\n")).expect("recipients");
    let identity = dir.join("identity.txt");
    std::fs::write(&identity, identity_file(&secret, &public)).expect("identity");
    Keys { recipients, identity, secret, public }
}

pub fn key_pair() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    (identity.to_string().expose_secret().to_owned(), identity.to_public().to_string())
}

pub fn identity_file(secret: &str, public: &str) -> String {
    format!("# created: 2026-12-03T12:00:00Z\n# public key: {public}\n{secret}\n")
}
