"""Encryption at rest and masking of upstream secrets (DESIGN §5)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


def mask_secret(secret: str) -> str:
    """``AIzaSyD…x9`` style: enough to recognise a key, never enough to use it."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "…"
    return f"{secret[:4]}…{secret[-2:]}"


class SecretBox:
    """Symmetric encryption of upstream credentials with a key derived from the server key."""

    def __init__(self, server_key: str) -> None:
        derived = hashlib.sha256(b"flowgate-credentials:" + server_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, secret: str) -> str:
        """Ciphertext as text."""
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Plain secret; raises ``ValueError`` if the server key changed."""
        if not ciphertext:
            return ""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored credential cannot be decrypted with this server key") from exc
