"""The certificates of `senate tls`, made as Consul's tlsutil/generate.go makes them (with the
key helpers of agent/connect): ECDSA P-256 keys in "EC PRIVATE KEY" PEM, 128-bit random serial
numbers, the subject key ID a SHA-256 of the public key, the CA's subject and extensions as
Consul writes them (in Go's crypto/x509 order), and `verify`, the check Consul runs on every
certificate before saving it, with the error texts of Go's x509.Certificate.Verify."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import re
import secrets
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from agent.cli.common import go_quote

#: the private keys Consul's connect.ParseSigner accepts and Go's x509 can sign with
Signer = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TLSGenError(Exception):
    """A failure worded as Consul words it; the command prints str(exc) and exits 1."""


def generate_serial_number() -> int:
    """tlsutil.GenerateSerialNumber: uniform below 2^128 (never 0: an X.509 serial is positive)."""
    while True:
        serial = secrets.randbelow(1 << 128)
        if serial:
            return serial


def generate_private_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """connect.GeneratePrivateKey: ECDSA on P-256, PEM-encoded as SEC 1 ("EC PRIVATE KEY")."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key, pem.decode()


def key_id(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    """tlsutil.keyID: SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute:
    """A name attribute typed as Go's encoding/asn1 types a string: PrintableString when every
    character allows it, else UTF8String."""
    kind = _ASN1Type.PrintableString if _PRINTABLE.fullmatch(value) else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=kind)


def _add_days(now: datetime.datetime, days: int) -> datetime.datetime:
    """time.Now().AddDate(0, 0, days): calendar days on the local clock."""
    wall = now.astimezone().replace(tzinfo=None) + datetime.timedelta(days=days)
    stamp = time.mktime(wall.timetuple())
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).replace(microsecond=0)


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    try:
        not_after = _add_days(now, days)
    except (OverflowError, ValueError):
        raise TLSGenError(f"-days={days} is out of range") from None
    return now.replace(microsecond=0), not_after


def _key_usage(*, digital_signature: bool, key_encipherment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, signer: Signer) -> x509.Certificate:
    """x509.CreateCertificate's signature algorithm for the key: SHA-256 for RSA and P-256,
    SHA-384 for P-384, SHA-512 for P-521, pure Ed25519."""
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None
    if isinstance(signer, rsa.RSAPrivateKey):
        algorithm = hashes.SHA256()
    elif isinstance(signer, ec.EllipticCurvePrivateKey):
        by_curve: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
            "secp256r1": hashes.SHA256(),
            "secp384r1": hashes.SHA384(),
            "secp521r1": hashes.SHA512(),
        }
        algorithm = by_curve.get(signer.curve.name)
        if algorithm is None:
            raise TLSGenError("x509: unknown elliptic curve")
    return builder.sign(signer, algorithm)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def generate_ca(
    *,
    name: str = "",
    days: int = 0,
    domain: str = "",
    permitted_dns_domains: list[str] | None = None,
    cluster_id: str = "",
) -> tuple[str, str]:
    """tlsutil.GenerateCA: a self-signed CA with a new key; returns (certificate PEM, key PEM).
    The common name defaults to "Consul Agent CA <serial>", days 0 to 365."""
    key, key_pem = generate_private_key()
    ident = key_id(key.public_key())
    serial = generate_serial_number()
    common_name = name or f"Consul Agent CA {serial}"
    not_before, not_after = _validity(days or 365)
    if not_after < not_before:
        raise TLSGenError(f"error generating CA certificate: -days={days} is in the past")
    subject = x509.Name(
        [
            _attr(NameOID.COUNTRY_NAME, "US"),
            _attr(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            _attr(NameOID.LOCALITY_NAME, "San Francisco"),
            _attr(NameOID.STREET_ADDRESS, "101 Second Street"),
            _attr(NameOID.POSTAL_CODE, "94105"),
            _attr(NameOID.ORGANIZATION_NAME, "HashiCorp Inc."),
            _attr(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=False, ca=True), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(ident), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(ident, None, None), critical=False
        )  # Go copies the template's AuthorityKeyId on a self-signed certificate
    )
    if cluster_id:  # connect.SpiffeIDSigning{ClusterID, Domain}.URI()
        uri = x509.UniformResourceIdentifier(f"spiffe://{cluster_id}.{domain}")
        builder = builder.add_extension(x509.SubjectAlternativeName([uri]), critical=False)
    if permitted_dns_domains:
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in permitted_dns_domains]
        builder = builder.add_extension(x509.NameConstraints(permitted, None), critical=True)
    try:
        cert = _sign(builder, key)
    except ValueError as exc:
        raise TLSGenError(f"error generating CA certificate: {exc}") from None
    return _pem(cert), key_pem


_PEM_BLOCK = re.compile(
    r"-----BEGIN ([^-\r\n]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL | re.MULTILINE
)


def pem_blocks(text: str) -> list[tuple[str, bytes]]:
    """encoding/pem.Decode applied repeatedly: (type, bytes) of each well-formed block, headers
    (`Proc-Type: ...`) skipped, anything else between blocks ignored."""
    blocks: list[tuple[str, bytes]] = []
    for match in _PEM_BLOCK.finditer(text):
        lines = match.group(2).splitlines()
        if lines and ":" in lines[0]:  # RFC 1421 headers, up to a blank line
            lines = lines[lines.index("") + 1 :] if "" in lines else []
        body = "".join(lines)
        try:
            blocks.append((match.group(1), base64.b64decode("".join(body.split()), validate=True)))
        except (binascii.Error, ValueError):
            continue
    return blocks


def parse_cert(pem_text: str) -> x509.Certificate:
    """connect.ParseCert: the first PEM block, which must be a CERTIFICATE."""
    blocks = pem_blocks(pem_text)
    if not blocks:
        raise TLSGenError("no PEM-encoded data found")
    kind, der = blocks[0]
    if kind != "CERTIFICATE":
        raise TLSGenError("first PEM-block should be CERTIFICATE type")
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.extensions  # noqa: B018 -- Go parses every extension up front
    except ValueError:
        raise TLSGenError("x509: malformed certificate") from None
    return cert


def parse_signer(pem_text: str) -> Signer:
    """connect.ParseSigner: an "EC PRIVATE KEY", "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"."""
    blocks = pem_blocks(pem_text)
    if not blocks:
        raise TLSGenError("no PEM-encoded data found")
    kind, der = blocks[0]
    if kind not in ("EC PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY"):
        raise TLSGenError(f"unknown PEM block type for signing key: {kind}")
    failure = {
        "EC PRIVATE KEY": "x509: failed to parse EC private key",
        "RSA PRIVATE KEY": "x509: failed to parse private key",
        "PRIVATE KEY": "x509: failed to parse private key",
    }[kind]
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TLSGenError(failure) from None
    if kind == "EC PRIVATE KEY" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    if kind == "RSA PRIVATE KEY" and isinstance(key, rsa.RSAPrivateKey):
        return key
    if kind == "PRIVATE KEY" and isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        return key
    raise TLSGenError(failure)


def _public_der(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    return bytes(
        public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def parse_ip(text: str) -> IPAddress | None:
    """net.ParseIP: an IPv4 or IPv6 address (IPv4-mapped IPv6 as IPv4), else None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def generate_cert(
    *,
    signer: Signer,
    ca: str,
    name: str,
    days: int,
    dns_names: list[str],
    ip_addresses: list[IPAddress | None],
    ext_key_usage: list[x509.ObjectIdentifier],
) -> tuple[str, str]:
    """tlsutil.GenerateCert: a new key and a certificate for it signed by `signer` as `ca`;
    returns (certificate PEM, key PEM). An address net.ParseIP could not read (None) makes the
    certificate Go cannot parse back, so Consul's check after signing fails: so does this."""
    try:
        parent = parse_cert(ca)
    except TLSGenError as exc:
        raise TLSGenError(f"failed to parse CA: {exc}") from None
    key, key_pem = generate_private_key()
    ident = key_id(key.public_key())
    serial = generate_serial_number()
    if _public_der(signer.public_key()) != _public_der(parent.public_key()):
        raise TLSGenError(
            "failed to create certificate: x509: provided PrivateKey doesn't match parent's "
            "PublicKey"
        )
    for dns in dns_names:
        if not dns.isascii():
            raise TLSGenError(
                f"failed to create certificate: x509: {go_quote(dns)} cannot be encoded as an "
                "IA5String"
            )
    if any(ip is None for ip in ip_addresses):  # Go's Verify cannot parse it back
        raise TLSGenError("failed to parse certificate")
    not_before, not_after = _validity(days)
    if not_after < not_before:  # Go signs it; its Verify then refuses it
        raise TLSGenError(_expired(not_after))
    subject = x509.Name([_attr(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .subject_name(subject)
        .issuer_name(parent.subject)
        .public_key(key.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=True, ca=False), critical=True
        )
    )
    if ext_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext_key_usage), critical=False)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(x509.SubjectKeyIdentifier(ident), critical=False)
    try:  # Go names the parent's key unless the certificate is self-issued
        parent_ski = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        if parent.subject != subject:
            aki = x509.AuthorityKeyIdentifier(parent_ski.value.digest, None, None)
            builder = builder.add_extension(aki, critical=False)
    except x509.ExtensionNotFound:
        pass
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ip) for ip in ip_addresses if ip is not None]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        cert = _sign(builder, signer)
    except ValueError as exc:
        raise TLSGenError(f"failed to create certificate: {exc}") from None
    return _pem(cert), key_pem


def _rfc3339(moment: datetime.datetime) -> str:
    """Go's time.Format(time.RFC3339): seconds, "Z" for UTC."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _expired(not_after: datetime.datetime) -> str:
    now = _rfc3339(datetime.datetime.now().astimezone())
    return (
        "x509: certificate has expired or is not yet valid: "
        f"current time {now} is after {_rfc3339(not_after)}"
    )


def _check_validity(cert: x509.Certificate, now: datetime.datetime) -> None:
    if now < cert.not_valid_before_utc:
        shown = _rfc3339(now.astimezone())
        raise TLSGenError(
            "x509: certificate has expired or is not yet valid: "
            f"current time {shown} is before {_rfc3339(cert.not_valid_before_utc)}"
        )
    if now > cert.not_valid_after_utc:
        raise TLSGenError(_expired(cert.not_valid_after_utc))


def _reverse_labels(domain: str) -> list[str] | None:
    """crypto/x509's domainToReverseLabels."""
    if not domain:
        return []
    labels = domain.split(".")[::-1]
    for label in labels:
        if not label or any(ord(c) < 33 or ord(c) > 126 for c in label):
            return None
    return labels


def _match_domain(domain: str, constraint: str) -> bool:
    """crypto/x509's matchDomainConstraint (a leading "." means subdomains only)."""
    if not constraint:
        return True
    labels = _reverse_labels(domain)
    if labels is None:
        raise TLSGenError(f"x509: internal error: cannot parse domain {go_quote(domain)}")
    subdomains_only = constraint.startswith(".")
    wanted = _reverse_labels(constraint[1:] if subdomains_only else constraint)
    if wanted is None:
        raise TLSGenError(f"x509: internal error: cannot parse domain {go_quote(constraint)}")
    if len(labels) < len(wanted) or (subdomains_only and len(labels) == len(wanted)):
        return False
    return all(a.lower() == b.lower() for a, b in zip(wanted, labels, strict=False))


def _check_root(root: x509.Certificate, leaf: x509.Certificate, now: datetime.datetime) -> None:
    """isValid(rootCertificate): the root's validity, then the leaf's DNS names against the
    root's permitted DNS subtrees."""
    _check_validity(root, now)
    try:
        constraints = root.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    permitted = [
        g.value for g in constraints.permitted_subtrees or [] if isinstance(g, x509.DNSName)
    ]
    excluded = [g.value for g in constraints.excluded_subtrees or [] if isinstance(g, x509.DNSName)]
    for dns in _dns_names(leaf):
        if _reverse_labels(dns) is None:
            raise TLSGenError(f"x509: cannot parse dnsName {go_quote(dns)}")
        detail = f"DNS name {go_quote(dns)}"
        for constraint in excluded:
            if _match_domain(dns, constraint):
                raise TLSGenError(
                    "x509: a root or intermediate certificate is not authorized to sign for "
                    f"this name: {detail} is excluded by constraint {go_quote(constraint)}"
                )
        if permitted and not any(_match_domain(dns, c) for c in permitted):
            raise TLSGenError(
                "x509: a root or intermediate certificate is not authorized to sign for this "
                f"name: {detail} is not permitted by any constraint"
            )


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _check_signature_from(cert: x509.Certificate, parent: x509.Certificate) -> None:
    """Certificate.CheckSignatureFrom: the parent may sign certificates, and did sign this."""
    try:
        basic = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
        may_sign = basic.ca
    except x509.ExtensionNotFound:
        may_sign = parent.version != x509.Version.v3
    try:
        usage = parent.extensions.get_extension_for_class(x509.KeyUsage).value
        may_sign = may_sign and usage.key_cert_sign
    except x509.ExtensionNotFound:
        pass
    if not may_sign:
        raise TLSGenError(
            "x509: invalid signature: parent certificate cannot sign this kind of certificate"
        )
    try:
        cert.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        public = parent.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            raise TLSGenError("x509: ECDSA verification failure") from None
        if isinstance(public, rsa.RSAPublicKey):
            raise TLSGenError("crypto/rsa: verification error") from None
        raise TLSGenError("x509: signature verification failure") from None


def _hint_name(cert: x509.Certificate) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = cert.subject.get_attributes_for_oid(oid)
        if values and values[0].value:
            return str(values[0].value)
    return f"serial:{cert.serial_number}"


def verify(ca_pem: str, cert_pem: str, dns: str) -> None:
    """tlsutil.Verify: the certificate chains to a certificate of `ca_pem` and is valid for
    `dns` now, as Go's x509.Certificate.Verify decides it (and words its refusals)."""
    roots: list[x509.Certificate] = []
    for kind, der in pem_blocks(ca_pem):
        if kind == "CERTIFICATE":
            try:
                roots.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    if not roots:
        raise TLSGenError("failed to parse root certificate")
    try:
        cert = parse_cert(cert_pem)
    except TLSGenError:
        raise TLSGenError("failed to parse certificate") from None
    now = datetime.datetime.now(datetime.UTC)
    _check_validity(cert, now)
    names = _dns_names(cert)
    if not any(n.lower() == dns.lower() for n in names):
        raise TLSGenError(f"x509: certificate is valid for {', '.join(names)}, not {dns}")
    hint: tuple[TLSGenError, x509.Certificate] | None = None
    for root in roots:
        if root.subject != cert.issuer:
            continue
        try:
            _check_signature_from(cert, root)
            _check_root(root, cert, now)
        except TLSGenError as exc:
            hint = hint or (exc, root)
            continue
        return
    message = "x509: certificate signed by unknown authority"
    if hint is not None:
        message += (
            f" (possibly because of {go_quote(str(hint[0]))} while trying to verify candidate "
            f"authority certificate {go_quote(_hint_name(hint[1]))})"
        )
    raise TLSGenError(message)
