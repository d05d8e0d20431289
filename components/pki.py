"""The cluster's CAs and the deployer's client certificate, minted in the program (tls provider).

k3s takes CA files it finds before its first start (docs.k3s.io/cli/certificate, "Using Custom
CA Certificates"), so the kubeconfig is built here from these, never read from a server, and the
deployer's certificate is re-issued by any `up` inside its renewal window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_tls as tls

from config.models import StackConfig
from render.apiserver import DEPLOYER_USER, LEGACY_DEPLOYER_GROUP
from render.cloudinit import CA_NAMES, SERVICE_KEY_FILE
from render.naming import prefix

# k3s's own CAs last 10 years and are not renewed automatically (docs.k3s.io/cli/certificate).
CA_VALIDITY_HOURS: Final = 10 * 365 * 24
CA_USES: Final = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterPkiArgs:
    cfg: StackConfig
    # The region has no deployer binding yet (components/record.binding_source): the certificate
    # stays in the group it was created with, which needs none, until the binding exists.
    legacy_group: bool = False


class ClusterPki(pulumi.ComponentResource):
    TYPE: Final = "sovereign:infra:ClusterPki"

    def __init__(
        self, name: str, args: ClusterPkiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self)
        keys: dict[str, tls.PrivateKey] = {}
        certs: dict[str, tls.SelfSignedCert] = {}
        for ca in CA_NAMES:
            slug = ca.replace("/", "-")
            keys[ca] = tls.PrivateKey(
                f"{name}-{slug}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child
            )
            certs[ca] = tls.SelfSignedCert(
                f"{name}-{slug}",
                private_key_pem=keys[ca].private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=f"k3s-{slug}", organization=prefix(cfg)
                ),
                validity_period_hours=CA_VALIDITY_HOURS,
                is_ca_certificate=True,
                allowed_uses=CA_USES,
                opts=child,
            )
        service_key = tls.PrivateKey(
            f"{name}-service-key", algorithm="RSA", rsa_bits=2048, opts=child
        )

        files: dict[str, pulumi.Output[str]] = {SERVICE_KEY_FILE: service_key.private_key_pem}
        for ca in CA_NAMES:
            files[f"{ca}.crt"] = certs[ca].cert_pem
            files[f"{ca}.key"] = keys[ca].private_key_pem
        self.ca_files: pulumi.Output[dict[str, str]] = pulumi.Output.secret(
            pulumi.Output.all(**files).apply(lambda pems: {k: str(v) for k, v in pems.items()})
        )
        self.server_ca_pem: pulumi.Output[str] = certs["server-ca"].cert_pem
        # The server CA's key is the cluster's identity: a new key is a new cluster.
        self.server_ca_fingerprint: pulumi.Output[str] = keys[
            "server-ca"
        ].public_key_fingerprint_sha256

        api = cfg.api
        deployer_key = tls.PrivateKey(
            f"{name}-api-client-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child
        )
        # A group of the program's own, cluster-admin only through the ClusterRoleBinding
        # cloud-init writes (render/apiserver.py) or, in a region created before, the program
        # creates (components/record.py): system:masters skips RBAC and so could not be revoked
        # short of a new client CA. A region without the binding keeps system:masters until the
        # binding exists: a certificate of a group with no binding is refused every call (403).
        group = LEGACY_DEPLOYER_GROUP if args.legacy_group else api.deployer_group
        request = tls.CertRequest(
            f"{name}-api-client-csr",
            private_key_pem=deployer_key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=DEPLOYER_USER, organization=group),
            opts=child,
        )
        deployer = tls.LocallySignedCert(
            f"{name}-api-client",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=keys["client-ca"].private_key_pem,
            ca_cert_pem=certs["client-ca"].cert_pem,
            validity_period_hours=api.client_cert_days * 24,
            # Any `up` inside this window issues a new certificate before the old one expires.
            early_renewal_hours=api.renew_before_days * 24,
            allowed_uses=["client_auth", "digital_signature", "key_encipherment"],
            opts=child,
        )
        self.client_cert_pem: pulumi.Output[str] = deployer.cert_pem
        self.client_key_pem: pulumi.Output[str] = pulumi.Output.secret(deployer_key.private_key_pem)
        self.register_outputs(
            {
                "serverCaPem": self.server_ca_pem,
                "serverCaFingerprint": self.server_ca_fingerprint,
                "clientCertPem": self.client_cert_pem,
            }
        )
