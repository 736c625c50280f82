"""The header of binary netpbm images (PPM ``P6``, PGM ``P5``).

Two readers use it: `stn_keras.data.ppm` decodes GTSRB's PPM files to numpy
in Python, with errors naming the file; `stn_keras.export.image_decoding`
decodes PPM/PGM inside the ``predict_bytes`` graph, where Python cannot
run. Both match the header with `NETPBM_HEADER` (Python's ``re`` and
TensorFlow's RE2 read it alike) and refuse the same maxvals.
"""

import re

# Magic, width, height and maxval separated by whitespace or "#" comments
# running to the end of the line, then exactly one whitespace byte before
# the raster.
_SEPARATOR = r"(?:\s|#[^\r\n]*[\r\n])+"
NETPBM_HEADER = (
    rf"^(P[56]){_SEPARATOR}(\d+){_SEPARATOR}(\d+){_SEPARATOR}(\d+)\s"
)
NETPBM_MAX_MAXVAL = 65535
NETPBM_HEADER_ERROR = (
    "Invalid PPM/PGM header: expected 'P6' or 'P5', width, height and maxval "
    "separated by whitespace or # comments, then one whitespace byte"
)
NETPBM_MAXVAL_ERROR = "Invalid PPM/PGM header: maxval must be in [1, 65535]"

_HEADER = re.compile(NETPBM_HEADER.encode())


def read_netpbm_header(data):
    """Reads a binary PPM/PGM header.

    Args:
        data: the file's bytes.

    Returns:
        ``(magic, width, height, maxval, raster_offset)``: the magic
        (``b"P6"`` or ``b"P5"``), the three numbers as ints and the offset
        of the first sample.

    Raises:
        ValueError: with `NETPBM_HEADER_ERROR` for a malformed or truncated
            header, `NETPBM_MAXVAL_ERROR` for a maxval out of range.
    """
    match = _HEADER.match(data)
    if match is None:
        raise ValueError(NETPBM_HEADER_ERROR)
    width, height, maxval = (int(match.group(index)) for index in (2, 3, 4))
    if not 1 <= maxval <= NETPBM_MAX_MAXVAL:
        raise ValueError(NETPBM_MAXVAL_ERROR)
    return match.group(1), width, height, maxval, match.end()
