"""The profile's images, secrets section: Findings only: image references and literal secrets, never written."""

from __future__ import annotations

from readiness.engine.fragments import (
    Managed,
    Plan,
    Problem,
    SectionInput,
    SectionResult,
    each,
)
from readiness.engine.secrets import secret_reason
from readiness.models.profile import (
    Images,
    Secrets,
)

# The check ids of findings no write fixes: the team changes the manifest.
FINDINGS = ("images.latest", "images.digest", "secrets.literal")


def images(ctx: SectionInput) -> SectionResult:
    """Image references that do not say exactly what runs. Never written: a violation each."""
    return each(ctx, ctx.spec.images, _images_of)


def _images_of(ctx: SectionInput, c: Managed, declared: Images) -> Plan:
    image = str(c.live.get("image") or "")
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    out = Plan()
    if declared.forbid_latest and not digest and tag in (None, "latest"):
        out.notes.append(
            Problem(
                "images.latest",
                f"{c.where}.image",
                f"container {c.name} runs image {image!r}, "
                + ("tagged latest" if tag else "with no tag (latest)")
                + ": what runs changes without a change here; pin a version tag or a digest",
            )
        )
    if declared.require_digest and not digest.startswith("sha256:"):
        out.notes.append(
            Problem(
                "images.digest",
                f"{c.where}.image",
                f"container {c.name} runs image {image!r} without a digest; the profile requires @sha256:...",
            )
        )
    return out


def secrets(ctx: SectionInput) -> SectionResult:
    """Literal env values that look like secrets. Never written, never quoted: a violation each,
    naming the container and the variable."""
    return each(ctx, ctx.spec.secrets, _secrets_of)


def _secrets_of(ctx: SectionInput, c: Managed, declared: Secrets) -> Plan:
    out = Plan()
    if not declared.forbid_literal_values:
        return out
    for name, entry in c.env.items():
        value = entry.get("value")
        reason = secret_reason(name, value) if isinstance(value, str) else None
        if reason is not None:
            out.notes.append(
                Problem(
                    "secrets.literal",
                    f"{c.where}.env[{name}]",
                    f"container {c.name}: {name} holds a literal value that looks like a secret ({reason}); "
                    "take it from a Secret (valueFrom.secretKeyRef)",
                )
            )
    return out
