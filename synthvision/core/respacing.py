"""Timestep respacing (GLIDE, improved DDPM): which of the 1,000 trained diffusion steps a shorter
sampling process keeps.

Pure integer arithmetic (no torch), so that the config can validate a respacing spec without loading
any model code.
"""

from __future__ import annotations

BASE_STEPS = 1000

# GLIDE's 27-step upsampler schedule: sections of 10, 10, 3, 2 and 2 steps over five fifths of the
# process, with the noisiest step (999) replaced by 997 to reduce artefacts from it.
FAST27 = "fast27"


def respaced_steps(spec: str, steps: int = BASE_STEPS) -> list[int]:
    """The base steps kept by a respacing spec, ascending.

    - `"100"` or `"10,10,3"`: split the process into as many equal sections as there are numbers and
      take that many evenly strided steps from each, first and last step of a section included. As
      improved-diffusion does, the fractional stride is added to a running position that is rounded
      (half to even) at each step: for some counts (21, 23, 31, ...) that keeps another step than
      rounding `j * stride` would.
    - `"ddim50"`: the integer stride that gives exactly 50 steps, from step 0.
    - `"fast27"`: GLIDE's upsampler schedule (see FAST27).
    """
    if spec == FAST27:
        kept = set(respaced_steps("10,10,3,2,2", steps))
        kept.remove(steps - 1)
        kept.add(steps - 3)
        return sorted(kept)
    if spec.startswith("ddim"):
        wanted = int(spec[len("ddim") :])
        for stride in range(1, steps):
            if len(range(0, steps, stride)) == wanted:
                return list(range(0, steps, stride))
        raise ValueError(f"respacing {spec!r}: no integer stride gives exactly {wanted} of {steps} steps")
    try:
        counts = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(
            f"respacing {spec!r}: use a step count ('100'), section counts ('10,10,3'), 'ddimN' or 'fast27'"
        ) from None
    size, extra = divmod(steps, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if not 0 < count <= section:
            raise ValueError(f"respacing {spec!r}: cannot take {count} steps from a section of {section}")
        stride = (section - 1) / (count - 1) if count > 1 else 1
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += section
    return kept
