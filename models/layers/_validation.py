"""Argument checks shared by the layers of ``models.layers``."""


def validate_strides(strides):
    """Returns ``strides`` as one int >= 1.

    Accepts a single int or a tuple / list of equal ints (one stride for both spatial axes);
    anything else raises ``ValueError`` naming ``strides``.
    """
    if isinstance(strides, (tuple, list)):
        if len(set(strides)) != 1:
            raise ValueError(f"strides must be a single int, got strides={strides!r}")
        strides = strides[0]
    if int(strides) < 1:
        raise ValueError(f"strides must be >= 1, got strides={strides!r}")
    return int(strides)
