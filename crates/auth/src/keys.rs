//! The keys tokens are verified with, and the algorithms each one accepts.
//!
//! The algorithms come from the key, never from the token (RFC 8725 §3.1):
//! an HMAC secret accepts HS256/384/512 only, an RSA key RS*/PS*, a P-256
//! key ES256, a P-384 key ES384, an Ed25519 key EdDSA. So a token signed
//! "HS256" with a public key as its secret (algorithm confusion), or `none`,
//! verifies against nothing.

use jsonwebtoken::{Algorithm, DecodingKey};
use spki::der::asn1::ObjectIdentifier;
use spki::der::pem::PemLabel;
use spki::{SubjectPublicKeyInfoRef, der};

/// A key and the algorithms it verifies.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) decoding: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?})", self.algorithms)
    }
}

/// `rsaEncryption` (RFC 8017).
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480).
const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// The P-256 curve, `secp256r1` (RFC 5480).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// The P-384 curve, `secp384r1` (RFC 5480).
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-Ed25519` (RFC 8410).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Every RSA signature algorithm (RFC 7518 §3.3, §3.5).
pub(crate) const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The smallest RSA modulus taken, in bits (RFC 7518 §3.3: "2048 bits or
/// larger MUST be used").
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// Bytes of an Ed25519 public key (RFC 8032 §5.1.5).
pub(crate) const ED25519_KEY_BYTES: usize = 32;

/// Checks an RSA modulus (big-endian bytes, leading zeros allowed) is at
/// least [`MIN_RSA_BITS`] long. Errors say how long it is.
pub(crate) fn check_rsa_modulus(modulus: &[u8]) -> Result<(), String> {
    let significant = modulus
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |at| &modulus[at..]);
    let bits = significant.first().map_or(0, |first| {
        significant.len() * 8 - first.leading_zeros() as usize
    });
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    Ok(())
}

/// An RSA key from its PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1: a sequence
/// of the modulus and the public exponent), checked for shape and size.
fn rsa(pkcs1: &[u8]) -> Result<Key, String> {
    use der::{Decode, Reader, SliceReader, asn1::UintRef};
    let not_rsa = |e: der::Error| format!("not an RSA public key: {e}");
    let mut reader = SliceReader::new(pkcs1).map_err(not_rsa)?;
    let modulus = reader
        .sequence(|fields| {
            let modulus = UintRef::decode(fields)?;
            UintRef::decode(fields)?;
            Ok(modulus.as_bytes().to_vec())
        })
        .map_err(not_rsa)?;
    reader.finish(()).map_err(not_rsa)?;
    check_rsa_modulus(&modulus)?;
    Ok(Key {
        decoding: DecodingKey::from_rsa_der(pkcs1),
        algorithms: RSA_ALGORITHMS.to_vec(),
    })
}

/// An HMAC secret (`CHAT_JWT_SECRET`).
pub(crate) fn hmac(secret: &[u8]) -> Key {
    Key {
        decoding: DecodingKey::from_secret(secret),
        algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
    }
}

/// A public key in PEM (`CHAT_JWT_PUBLIC_KEY`): `PUBLIC KEY` (SPKI, RFC
/// 5280 §4.1) holding an RSA, P-256, P-384 or Ed25519 key, or `RSA PUBLIC
/// KEY` (PKCS#1). Errors say what was found instead.
pub(crate) fn from_pem(pem: &str) -> Result<Key, String> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| format!("not a PEM document: {e}"))?;
    if label == "RSA PUBLIC KEY" {
        return rsa(&der);
    }
    if label != SubjectPublicKeyInfoRef::PEM_LABEL {
        return Err(format!(
            "a PEM '{label}'; expected a 'PUBLIC KEY' (or 'RSA PUBLIC KEY')"
        ));
    }
    let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| format!("not a public key: {e}"))?;
    let key = spki.subject_public_key.raw_bytes();
    let algorithm = spki.algorithm.oid;
    if algorithm == RSA {
        // The bit string holds the PKCS#1 RSAPublicKey, as jsonwebtoken takes it.
        return rsa(key);
    }
    if algorithm == ED25519 {
        if key.len() != ED25519_KEY_BYTES {
            return Err(format!(
                "an Ed25519 key of {} bytes ({ED25519_KEY_BYTES} expected)",
                key.len()
            ));
        }
        return Ok(Key {
            decoding: DecodingKey::from_ed_der(key),
            algorithms: vec![Algorithm::EdDSA],
        });
    }
    if algorithm == EC {
        let curve = spki
            .algorithm
            .parameters_oid()
            .map_err(|e| format!("an EC key without its curve: {e}"))?;
        let (algorithm, size) = if curve == P256 {
            (Algorithm::ES256, 65)
        } else if curve == P384 {
            (Algorithm::ES384, 97)
        } else {
            return Err(format!(
                "an EC key on curve {curve}; P-256 and P-384 are accepted"
            ));
        };
        if key.len() != size || key.first() != Some(&4) {
            return Err("an EC key not in uncompressed form".into());
        }
        return Ok(Key {
            decoding: DecodingKey::from_ec_der(key),
            algorithms: vec![algorithm],
        });
    }
    Err(format!(
        "a key of algorithm {algorithm}; RSA, P-256, P-384 and Ed25519 are accepted"
    ))
}
