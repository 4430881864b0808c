"""This installation's peer-link identity and the ways a pin is shown to people.

The receiver binds our ``dashboard_id`` to our key's pin when it approves the pairing, so
the two are created together and must live and die together (docs/protocol.md §2.3, §4.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import re
import secrets
from typing import Self

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

DASHBOARD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PIN_RE = re.compile(r"^[0-9a-f]{64}$")

# Matrix SAS v1 emoji table; the order is frozen by that spec and shared with the
# receiver's console banner and UI, so both sides show the same seven pictures.
SAS_EMOJI: tuple[tuple[str, str], ...] = (
    ("\U0001f436", "Dog"),
    ("\U0001f431", "Cat"),
    ("\U0001f981", "Lion"),
    ("\U0001f40e", "Horse"),
    ("\U0001f984", "Unicorn"),
    ("\U0001f437", "Pig"),
    ("\U0001f418", "Elephant"),
    ("\U0001f430", "Rabbit"),
    ("\U0001f43c", "Panda"),
    ("\U0001f413", "Rooster"),
    ("\U0001f427", "Penguin"),
    ("\U0001f422", "Turtle"),
    ("\U0001f41f", "Fish"),
    ("\U0001f419", "Octopus"),
    ("\U0001f98b", "Butterfly"),
    ("\U0001f337", "Flower"),
    ("\U0001f333", "Tree"),
    ("\U0001f335", "Cactus"),
    ("\U0001f344", "Mushroom"),
    ("\U0001f30f", "Globe"),
    ("\U0001f319", "Moon"),
    ("\u2601\ufe0f", "Cloud"),
    ("\U0001f525", "Fire"),
    ("\U0001f34c", "Banana"),
    ("\U0001f34e", "Apple"),
    ("\U0001f353", "Strawberry"),
    ("\U0001f33d", "Corn"),
    ("\U0001f355", "Pizza"),
    ("\U0001f382", "Cake"),
    ("\u2764\ufe0f", "Heart"),
    ("\U0001f600", "Smiley"),
    ("\U0001f916", "Robot"),
    ("\U0001f3a9", "Hat"),
    ("\U0001f453", "Glasses"),
    ("\U0001f527", "Wrench"),
    ("\U0001f385", "Santa"),
    ("\U0001f44d", "Thumbs up"),
    ("\u2602\ufe0f", "Umbrella"),
    ("\u231b\ufe0f", "Hourglass"),
    ("\u23f0", "Clock"),
    ("\U0001f381", "Gift"),
    ("\U0001f4a1", "Light bulb"),
    ("\U0001f4d5", "Book"),
    ("\u270f\ufe0f", "Pencil"),
    ("\U0001f4ce", "Paperclip"),
    ("\u2702\ufe0f", "Scissors"),
    ("\U0001f512", "Lock"),
    ("\U0001f511", "Key"),
    ("\U0001f528", "Hammer"),
    ("\u260e\ufe0f", "Telephone"),
    ("\U0001f3c1", "Flag"),
    ("\U0001f682", "Train"),
    ("\U0001f6b2", "Bicycle"),
    ("\u2708\ufe0f", "Aeroplane"),
    ("\U0001f680", "Rocket"),
    ("\U0001f3c6", "Trophy"),
    ("\u26bd\ufe0f", "Ball"),
    ("\U0001f3b8", "Guitar"),
    ("\U0001f3ba", "Trumpet"),
    ("\U0001f514", "Bell"),
    ("\u2693\ufe0f", "Anchor"),
    ("\U0001f3a7", "Headphones"),
    ("\U0001f4c1", "Folder"),
    ("\U0001f4cc", "Pin"),
)
_EMOJI_COUNT = 7
_EMOJI_NIBBLES = 11  # 44 bits carry seven 6-bit groups; the last two bits are unused


def pin_sha256_for_pubkey(public_key: bytes) -> str:
    """Return the pin: lowercase hex SHA-256 of the raw 32-byte X25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    return hashlib.sha256(public_key).hexdigest()


def is_valid_pin(pin: str) -> bool:
    """Tell whether ``pin`` is 64 lowercase hex characters."""
    return bool(PIN_RE.fullmatch(pin))


def format_pin_hex(pin: str) -> str:
    """Render the pin as 32 space-separated byte pairs, as the receiver's console does."""
    return " ".join(pin[i : i + 2] for i in range(0, len(pin), 2))


def pin_emoji_indices(pin: str) -> tuple[int, ...]:
    """Return the seven SAS table indices of a pin (most significant 6-bit groups first)."""
    bits = int(pin[:_EMOJI_NIBBLES], 16)
    total = _EMOJI_NIBBLES * 4
    return tuple((bits >> (total - 6 * (i + 1))) & 0x3F for i in range(_EMOJI_COUNT))


def pin_emoji(pin: str) -> str:
    """Render the pin's seven emoji, space separated."""
    return " ".join(SAS_EMOJI[i][0] for i in pin_emoji_indices(pin))


def pin_emoji_names(pin: str) -> str:
    """Render the names of the pin's seven emoji, comma separated."""
    return ", ".join(SAS_EMOJI[i][1] for i in pin_emoji_indices(pin))


def new_dashboard_id() -> str:
    """Mint a fully random 32-character URL-safe id.

    The receiver keys its build tree on the first eight characters, so no fixed prefix.
    """
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Identity:
    """Our static X25519 key and the ``dashboard_id`` the receiver binds to it."""

    private_key: bytes = field(repr=False)
    dashboard_id: str

    def __post_init__(self) -> None:
        if len(self.private_key) != 32:
            raise ValueError("an X25519 private key is 32 bytes")
        if not DASHBOARD_ID_RE.fullmatch(self.dashboard_id):
            raise ValueError("dashboard_id must be 1-64 characters of [A-Za-z0-9_-]")

    @classmethod
    def generate(cls) -> Self:
        """Create a fresh identity: a new key always goes with a new ``dashboard_id``."""
        return cls(secrets.token_bytes(32), new_dashboard_id())

    @property
    def public_key(self) -> bytes:
        """Derive the raw public key; never stored, so it cannot drift from the private key."""
        return X25519PrivateKey.from_private_bytes(self.private_key).public_key().public_bytes_raw()

    @property
    def pin_sha256(self) -> str:
        """Our own pin, which the server's admin compares when approving us."""
        return pin_sha256_for_pubkey(self.public_key)

    def to_dict(self) -> dict[str, str]:
        """Serialise for storage (contains the private key: store it privately)."""
        return {"private_key": self.private_key.hex(), "dashboard_id": self.dashboard_id}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Self:
        """Load what :meth:`to_dict` wrote."""
        return cls(bytes.fromhex(data["private_key"]), data["dashboard_id"])
