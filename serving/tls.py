"""HTTPS for the phone preview (browsers open the camera only on HTTPS): a self-signed certificate
for this host's names and LAN address, made on first use and kept in the workspace."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path


def ensure_certificate(folder: Path, lan_ip: str) -> dict:
    """(cert, key) paths and the certificate's SHA-256 fingerprint; a new one when the LAN IP changed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if ipaddress.ip_address(lan_ip) in names.get_values_for_type(x509.IPAddress) and \
                cert.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7):
            return _describe(cert, cert_path, key_path)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edgefactory on {host}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName(host),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.IPAddress(ipaddress.ip_address(lan_ip))])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365)).add_extension(alt, critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _describe(cert, cert_path, key_path)


def _describe(cert, cert_path: Path, key_path: Path) -> dict:
    from cryptography.hazmat.primitives import hashes

    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return {"cert": str(cert_path), "key": str(key_path), "sha256": fingerprint}
