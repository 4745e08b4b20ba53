"""``fedseg-pki``: the federation CA; certificates, hospital kits, requests and revocation."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from shared import pki
from shared.cli import Parser, UsageError
from shared.errors import PKIError
from shared.identity import Role
from shared.pki.bundle import export_pkcs12

PROG = "fedseg-pki"
_PEER_ROLES = (Role.NODE.value, Role.ADMIN.value)
_ALL_ROLES = (*_PEER_ROLES, Role.SERVER.value)
_REASONS = {
    flag.name.replace("_", "-"): flag
    for flag in (
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.privilege_withdrawn,
    )
}
_Command = Callable[[argparse.Namespace], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return 0, or 2 after printing a one-line error to stderr."""
    try:
        args = _parser().parse_args(argv)
        args.run(args)
    except (UsageError, PKIError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _init(args: argparse.Namespace) -> None:
    print(f"CA certificate: {pki.create_ca(args.dir)}")


def _server(args: argparse.Namespace) -> None:
    dns, ips = _sans(args)
    _print_paths(pki.issue_server_certificate(args.dir, args.name, dns, ips))


def _client(args: argparse.Namespace) -> None:
    _print_paths(pki.issue_client_certificate(args.dir, args.name, Role(args.role)))


def _csr(args: argparse.Namespace) -> None:
    paths = pki.create_signing_request(args.out, args.name, Role(args.role))
    print(f"private key: {paths.private_key} (keep it here; it never leaves this machine)")
    print(f"request:     {paths.request} (send this to the federation's CA operator)")


def _sign(args: argparse.Namespace) -> None:
    print(f"certificate: {pki.sign_request(args.dir, args.csr, Role(args.role), args.out)}")


def _bootstrap(args: argparse.Namespace) -> None:
    dns, ips = _sans(args)
    admins = args.admin if args.admin is not None else ["admin"]
    pki.bootstrap(
        args.dir, args.nodes, admins, dns_names=dns, ip_addresses=ips,
        kits_dir=args.kits, aggregator_url=args.aggregator_url,
    )  # fmt: skip
    print(f"PKI ready in {args.dir}" + (f", kits in {args.kits}" if args.kits else ""))


def _kit(args: argparse.Namespace) -> None:
    role = Role(args.role)
    if (args.name is None) == (args.csr is None):
        raise UsageError("give exactly one of --name (new key) and --csr (the hospital's key)")
    if args.csr is not None:
        kit = pki.issue_kit_from_request(
            args.dir, args.out, args.csr, role, aggregator_url=args.aggregator_url,
            mount=args.mount, valid_days=args.valid_days,
        )  # fmt: skip
    else:
        dns, ips = _sans(args)
        kit = pki.issue_kit(
            args.dir, args.out, args.name, role, aggregator_url=args.aggregator_url,
            mount=args.mount, dns_names=dns, ip_addresses=ips, valid_days=args.valid_days,
        )  # fmt: skip
    verb = "issued" if kit.issued else "kept, still valid"
    print(f"kit for {kit.name} ({kit.role}) in {kit.folder}:")
    print(f"certificate: {kit.certificate} ({verb})")
    if kit.private_key is not None:
        print(f"private key: {kit.private_key} (0600; hand the kit over privately)")
    else:
        print(f"private key: none; it stays where {kit.name}'s request was made")
    print(f"CA:          {kit.ca}")
    print(f"settings:    {kit.env_file} (paths as mounted at {args.mount})")


def _revoke(args: argparse.Namespace) -> None:
    reason = None if args.reason is None else _REASONS[args.reason]
    if (args.cert is None) == (args.serial is None):
        raise UsageError("give exactly one of --cert and --serial")
    if args.cert is not None:
        holder, crl = pki.revoke_certificate(args.dir, args.cert, reason, args.valid_days)
        print(f"revoked {holder.name} ({holder.role}), serial {holder.serial:x}")
        tell = f"--cert {args.cert}"
    else:
        crl = pki.revoke(args.dir, _serial(args.serial), reason, args.valid_days)
        print(f"revoked serial {args.serial.lower()}")
        tell = f"--serial {args.serial.lower()} --name NAME"
    _print_crl(crl)
    print(f"to refuse it at once, without a restart: fedseg-admin revoke {tell}")


def _crl(args: argparse.Namespace) -> None:
    _print_crl(pki.issue_crl(args.dir, args.valid_days))


def _print_crl(crl: pki.RevocationList) -> None:
    print(
        f"CRL: {crl.path} (number {crl.number}, {len(crl.serials)} revoked, "
        f"valid until {crl.next_update.isoformat()})"
    )


def _serial(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise UsageError(f"--serial must be hexadecimal, got {text!r}") from None


def _show(args: argparse.Namespace) -> None:
    cert = pki.load_certificate(args.path)
    roles = [
        ou.value for ou in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    now = datetime.now(UTC)
    status = "expired" if now > end else "not yet valid" if now < start else "valid"
    print(f"subject:  {cert.subject.rfc4514_string()}")
    print(f"issuer:   {cert.issuer.rfc4514_string()}")
    print(f"role:     {', '.join(str(r) for r in roles) or '(none)'}")
    print(f"serial:   {cert.serial_number:x}")
    print(f"validity: {start.isoformat()} to {end.isoformat()} ({status})")
    print(f"SANs:     {', '.join(_describe_sans(cert)) or '(none)'}")


def _describe_sans(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = [f"DNS:{name}" for name in sans.get_values_for_type(x509.DNSName)]
    return dns + [f"IP:{ip}" for ip in sans.get_values_for_type(x509.IPAddress)]


def _p12(args: argparse.Namespace) -> None:
    """Bundle a node's or admin's certificate and key for a browser's certificate store."""

    def passphrase() -> bytes:
        return _passphrase(args.passphrase_file)

    holder = export_pkcs12(args.cert, args.key, args.out, passphrase, args.ca, args.legacy)
    print(f"PKCS#12: {args.out} ({holder.name}, {holder.role}; 0600, passphrase-protected)")
    print("import it into the browser's certificate store; deploy/README.md, section Dashboard")


def _passphrase(path: Path | None) -> bytes:
    """From the first line of ``path``, or asked twice on the terminal; never a CLI literal."""
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"--passphrase-file {path} cannot be read: {exc.strerror}") from None
        phrase = lines[0] if lines else ""
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for a passphrase; give --passphrase-file FILE")
        try:
            phrase = getpass.getpass("passphrase for the PKCS#12 file: ")
            if getpass.getpass("the same again: ") != phrase:
                raise UsageError("the two passphrases differ; nothing was written")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no passphrase given; nothing was written") from None
    return phrase.encode()


def _sans(args: argparse.Namespace) -> tuple[Sequence[str], Sequence[str]]:
    # argparse's "extend" would append to a non-empty default, so defaults are applied here.
    dns = pki.DEFAULT_DNS_NAMES if args.dns is None else args.dns
    return dns, pki.DEFAULT_IP_ADDRESSES if args.ip is None else args.ip


def _print_paths(paths: pki.CertificatePaths) -> None:
    print(f"certificate: {paths.certificate}")
    print(f"private key: {paths.private_key}")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Manage the fedseg federation's certificates.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: _Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        return sub

    def pki_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dir", type=Path, required=True, help="folder holding ca.pem, ca-key.pem"
        )

    def san_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dns", nargs="+", action="extend", metavar="NAME", help="default: localhost"
        )
        sub.add_argument(
            "--ip", nargs="+", action="extend", metavar="ADDR", help="default: 127.0.0.1"
        )

    pki_dir(command("init", _init, "create the federation CA (keeps an existing one)"))
    server = command("server", _server, "issue the aggregator's TLS server certificate")
    pki_dir(server)
    server.add_argument("--name", default="aggregator", help="server name (CN)")
    san_options(server)
    client = command("client", _client, "issue a node or admin certificate with its key")
    pki_dir(client)
    client.add_argument("--name", required=True, help="holder name (CN)")
    client.add_argument("--role", required=True, choices=_PEER_ROLES)
    csr = command("csr", _csr, "hospital side: create a private key and a signing request")
    csr.add_argument("--out", type=Path, required=True, help="folder for the key and request")
    csr.add_argument("--name", required=True, help="holder name (CN)")
    csr.add_argument("--role", default=Role.NODE.value, choices=_PEER_ROLES)
    sign = command("sign", _sign, "CA side: sign a hospital's request")
    pki_dir(sign)
    sign.add_argument("--csr", type=Path, required=True, help="the .csr file to sign")
    sign.add_argument("--role", required=True, choices=_PEER_ROLES)
    sign.add_argument("--out", type=Path, required=True, help="where to write the certificate")
    boot = command("bootstrap", _bootstrap, "create the CA and every missing certificate")
    pki_dir(boot)
    boot.add_argument("--nodes", nargs="+", required=True, metavar="NAME", help="node names")
    boot.add_argument("--admin", nargs="+", action="extend", metavar="NAME", help="default: admin")
    boot.add_argument("--kits", type=Path, help="write a kit per holder to KITS/<name> instead")
    boot.add_argument("--aggregator-url", help="https://host:port written into the kits")
    san_options(boot)
    kit = command("kit", _kit, "issue a holder's kit folder: certificate, key, CA, settings")
    pki_dir(kit)
    kit.add_argument("--out", type=Path, required=True, help="the kit folder (not the CA's)")
    kit.add_argument("--name", help="holder name (CN); a new key is made for it")
    kit.add_argument("--csr", type=Path, help="sign this request instead; no key in the kit")
    kit.add_argument("--role", default=Role.NODE.value, choices=_ALL_ROLES)
    kit.add_argument("--aggregator-url", help="https://host:port (node and admin kits)")
    kit.add_argument("--mount", default=pki.KIT_MOUNT, help="where the kit is mounted")
    kit.add_argument("--valid-days", type=int, default=825)
    san_options(kit)
    revoke = command("revoke", _revoke, "add a certificate to the CA's revocation list")
    pki_dir(revoke)
    revoke.add_argument("--cert", type=Path, help="the certificate to revoke")
    revoke.add_argument("--serial", help="or its serial number (hex)")
    revoke.add_argument("--reason", choices=sorted(_REASONS))
    revoke.add_argument("--valid-days", type=int, default=pki.CRL_VALID_DAYS, help="CRL validity")
    crl = command("crl", _crl, "create the CA's revocation list, or re-sign it before it expires")
    pki_dir(crl)
    crl.add_argument("--valid-days", type=int, default=pki.CRL_VALID_DAYS, help="CRL validity")
    # No abbreviations: "--passphrase SECRET" must not pass for --passphrase-file SECRET.
    p12_help = "export a certificate and its key as PKCS#12, for a browser"
    p12 = commands.add_parser("p12", help=p12_help, description=p12_help, allow_abbrev=False)
    p12.set_defaults(run=_p12)
    p12.add_argument("--cert", type=Path, required=True, help="the node or admin certificate")
    p12.add_argument("--key", type=Path, required=True, help="its private key")
    p12.add_argument("--ca", type=Path, help="also bundle the federation CA certificate")
    p12.add_argument("--out", type=Path, required=True, help="the .p12 file to write (0600)")
    p12.add_argument(
        "--passphrase-file", type=Path, metavar="FILE", help="first line (default: ask twice)"
    )
    p12.add_argument(
        "--legacy", action="store_true", help="3DES/SHA-1, for old macOS/Windows stores"
    )
    show = command("show", _show, "print a certificate's subject, role, serial and validity")
    show.add_argument("path", type=Path, help="PEM certificate file")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
