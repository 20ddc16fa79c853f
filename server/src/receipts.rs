//! Receipts: the server's HMAC-SHA256 over what an answer claims ([`AnswerClaim`]), given with
//! every answer its model makes and checked when feedback on that answer arrives (an answer
//! made in a visitor's browser gets one when the server has made it again, see
//! [`crate::browser_model::BrowserModel::remake`]). The key is
//! this Space's own, made once and kept in the data folder beside the feedback database, so
//! receipts outlive restarts; a Space that cannot write there signs with a key of this run.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wire::feedback::AnswerClaim;

const KEY_FILE: &str = "receipts.key";
const KEY_BYTES: usize = 32;
/// Random bytes of each receipt's own: two answers alike (greedy, one seed) still get receipts
/// of their own, so that a receipt names one answer and can be stored once.
pub const NONCE_BYTES: usize = 16;

pub struct Receipts {
    key: [u8; KEY_BYTES],
}

impl Receipts {
    /// The key kept in `data_dir`, made there the first time.
    pub fn open(data_dir: &Path) -> Self {
        match Self::read_or_make(data_dir) {
            Ok(receipts) => receipts,
            Err(error) => {
                tracing::error!(%error, dir = %data_dir.display(), "receipts are signed with a key of this run only: feedback on answers made before a restart will be refused");
                Self::ephemeral()
            }
        }
    }

    /// A key of this process only (tests, and a Space without a writable data folder).
    pub fn ephemeral() -> Self {
        Self {
            key: random_bytes(),
        }
    }

    fn read_or_make(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        if let Ok(kept) = std::fs::read(&path) {
            if let Ok(key) = <[u8; KEY_BYTES]>::try_from(kept.as_slice()) {
                return Ok(Self { key });
            }
            return Err(std::io::Error::other(format!(
                "{} is not a {KEY_BYTES}-byte key; delete it to make a new one",
                path.display()
            )));
        }
        std::fs::create_dir_all(data_dir)?;
        let key: [u8; KEY_BYTES] = random_bytes();
        // Written aside and renamed: a crash never leaves half a key, and two processes
        // starting at once agree on the one that lands.
        let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
        file.write_all(&key)?;
        file.as_file().sync_all()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        match file.persist_noclobber(&path) {
            Ok(_) => Ok(Self { key }),
            Err(_) => Self::read_or_make(data_dir),
        }
    }

    fn mac(&self, nonce: &[u8], claim: &AnswerClaim<'_>) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(nonce);
        mac.update(&claim.bytes());
        mac
    }

    /// A new receipt for `claim`, in hex: its nonce, then the HMAC of nonce and claim.
    pub fn sign(&self, claim: &AnswerClaim<'_>) -> String {
        let nonce: [u8; NONCE_BYTES] = random_bytes();
        let mac = self.mac(&nonce, claim).finalize().into_bytes();
        format!("{}{}", hex::encode(nonce), hex::encode(mac))
    }

    /// The receipt of an answer the server made again rather than saw made (one from a
    /// visitor's browser): the same claim always gets the same receipt, so that the same
    /// answer sent twice under two keys is stored once.
    pub fn sign_remade(&self, claim: &AnswerClaim<'_>) -> String {
        let mut nonce = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        nonce.update(b"remade");
        nonce.update(&claim.bytes());
        let nonce = nonce.finalize().into_bytes();
        let nonce = &nonce[..NONCE_BYTES];
        let mac = self.mac(nonce, claim).finalize().into_bytes();
        format!("{}{}", hex::encode(nonce), hex::encode(mac))
    }

    /// Whether `receipt` is one of this Space's for `claim` (compared in constant time).
    pub fn verify(&self, claim: &AnswerClaim<'_>, receipt: &str) -> bool {
        let Some(bytes) = hex::decode(receipt)
            .ok()
            .filter(|bytes| bytes.len() > NONCE_BYTES)
        else {
            return false;
        };
        let (nonce, mac) = bytes.split_at(NONCE_BYTES);
        self.mac(nonce, claim).verify_slice(mac).is_ok()
    }
}

/// The nonce of a receipt, in lowercase hex: what names the answer it was given for, however
/// the hex is spelt. `None` for what is not a receipt's hex.
pub fn nonce(receipt: &str) -> Option<String> {
    let bytes = hex::decode(receipt).ok()?;
    (bytes.len() > NONCE_BYTES).then(|| hex::encode(&bytes[..NONCE_BYTES]))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::feedback::WireMessage;

    #[test]
    fn a_receipt_holds_for_its_claim_only_and_its_key_outlives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let messages = [WireMessage {
            role: "user".into(),
            content: "¿Capital de Francia?".into(),
        }];
        let claim = AnswerClaim {
            messages: &messages,
            answer: "París.",
            sha256: "ab",
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 64,
            seed: 7,
        };
        let receipt = Receipts::open(dir.path()).sign(&claim);
        assert!(
            Receipts::open(dir.path()).verify(&claim, &receipt),
            "after a restart"
        );
        assert_ne!(
            Receipts::open(dir.path()).sign(&claim),
            receipt,
            "each its own"
        );
        let changed = AnswerClaim {
            answer: "Roma.",
            ..claim.clone()
        };
        assert!(!Receipts::open(dir.path()).verify(&changed, &receipt));
        assert!(
            !Receipts::ephemeral().verify(&claim, &receipt),
            "another Space's key"
        );
        assert!(!Receipts::open(dir.path()).verify(&claim, "zz"));
        let remade = Receipts::open(dir.path()).sign_remade(&claim);
        assert_eq!(
            Receipts::open(dir.path()).sign_remade(&claim),
            remade,
            "one per claim"
        );
        assert!(Receipts::open(dir.path()).verify(&claim, &remade));
        assert_ne!(Receipts::open(dir.path()).sign_remade(&changed), remade);
    }
}
