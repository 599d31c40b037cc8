//! TLS trust for the agent's and the CLI's connections to the server (HTTPS and
//! wss://): webpki's public roots, plus the CA of a CA file when one is given
//! (`--ca-file`, `DCLOUD_CA_FILE`), e.g. the CA of a private control plane.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::AgentError;

/// What a client trusts. Cheap to clone. The default trusts the public roots only.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CA file's PEM text, when one was given.
    ca_pem: Option<Arc<Vec<u8>>>,
    /// The rustls configuration for wss:// (`None`: tungstenite's default roots).
    config: Option<Arc<rustls::ClientConfig>>,
}

fn bad_ca(path: &Path, why: impl std::fmt::Display) -> AgentError {
    AgentError::System {
        what: "the CA file",
        message: format!("{}: {why}", path.display()),
    }
}

impl ClientTls {
    /// Trusts the certificates of the PEM file at `path` besides the public roots.
    pub fn from_ca_file(path: &Path) -> Result<ClientTls, AgentError> {
        let pem = std::fs::read(path).map_err(|e| bad_ca(path, e))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_ca(path, format!("not PEM certificates ({e})")))?;
        if certs.is_empty() {
            return Err(bad_ca(path, "holds no certificate"));
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad_ca(path, format!("not a usable CA certificate ({e})")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_ca(path, e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            ca_pem: Some(Arc::new(pem)),
            config: Some(Arc::new(config)),
        })
    }

    /// `from_ca_file` when a path is given, else the public roots only.
    pub fn from_optional(path: Option<&Path>) -> Result<ClientTls, AgentError> {
        path.map_or_else(|| Ok(ClientTls::default()), ClientTls::from_ca_file)
    }

    /// Adds the CA to an HTTP client being built.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, AgentError> {
        if let Some(pem) = &self.ca_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| AgentError::System {
                    what: "the CA file",
                    message: e.to_string(),
                })?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder)
    }

    /// The connector for wss:// (`None`: tungstenite's default, the public roots).
    pub fn connector(&self) -> Option<tokio_tungstenite::Connector> {
        self.config
            .clone()
            .map(tokio_tungstenite::Connector::Rustls)
    }
}
