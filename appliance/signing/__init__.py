"""Ed25519 signatures of model versions: keys, manifests, verification, rotation."""

from appliance.signing._keys import (
    KEY_FOLDER,
    PRIVATE_FILE,
    PUBLIC_FILE,
    TrustedKeys,
    key_id,
    public_pem,
    read_private_key,
    read_public_key,
    signing_key,
    trusted_keys,
    write_private_key,
)
from appliance.signing._manifest import (
    canonical,
    sign_manifest,
    signer_id,
    verify_folder,
)
from appliance.signing._rotation import (
    Rotation,
    rotate_and_record,
    rotate_signing_key,
)
from appliance.signing._versions import (
    sign_version,
    verified_files,
    verify_version,
    version_check,
    version_signer,
)

__all__ = [
    "KEY_FOLDER",
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "Rotation",
    "TrustedKeys",
    "canonical",
    "key_id",
    "public_pem",
    "read_private_key",
    "read_public_key",
    "rotate_and_record",
    "rotate_signing_key",
    "sign_manifest",
    "sign_version",
    "signer_id",
    "signing_key",
    "trusted_keys",
    "verified_files",
    "verify_folder",
    "verify_version",
    "version_check",
    "version_signer",
    "write_private_key",
]
