"""Structurally mutated images of every format ``predict_bytes`` reads, run in
a child process so that a decoder aborting the process fails a test instead
of killing pytest.

`seed_images` writes a valid file of every variant the formats declare (bit
depths, palettes, compressions, interlacing, progressive and CMYK JPEG,
animations, odd PPM maxvals); `fuzz_cases` derives mutants from them:
header fields set to negative, zero and huge values, truncations, appended
garbage and random byte flips. `run_in_child` feeds cases one at a time to
the ``predict_bytes`` signature of a SavedModel in a fresh Python process
and reports what each did. Used by tests/test_export.py and
bench/fuzz_decoding.py.
"""

import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

# Header values a mutation writes: negative, zero, small, at type limits, huge.
INTERESTING_INTEGERS = (
    0, 1, 2, 3, 7, 8, 15, 16, 17, 24, 31, 32, 255, 256, 4096, 16383, 16384,
    32767, 32768, 65535, 65536, 2**24, 2**30, 2**31 - 1, 2**31, 2**32 - 1,
    -1, -2, -4, -256, -65536, -(2**31),
)
DECODED = "decoded"
REFUSED = "refused"


# --- Seeds: a valid file of each variant. ---------------------------------


def _random_samples(shape, seed, maximum=255, dtype=np.uint8):
    return np.random.RandomState(seed).randint(0, maximum + 1, shape).astype(dtype)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_rows(samples, bit_depth):
    """Rows of packed samples, each after filter byte 0."""
    if bit_depth == 16:
        packed = samples.astype(">u2").reshape(samples.shape[0], -1).view(np.uint8)
    elif bit_depth == 8:
        packed = samples.astype(np.uint8).reshape(samples.shape[0], -1)
    else:
        per_byte = 8 // bit_depth
        flat = samples.reshape(samples.shape[0], -1).astype(np.uint8)
        width = -(-flat.shape[1] // per_byte) * per_byte
        flat = np.pad(flat, [(0, 0), (0, width - flat.shape[1])]).reshape(flat.shape[0], -1, per_byte)
        shifts = bit_depth * np.arange(per_byte - 1, -1, -1, dtype=np.uint8)
        packed = np.bitwise_or.reduce(flat << shifts, axis=-1).astype(np.uint8)
    return b"".join(b"\0" + row.tobytes() for row in packed)


# Adam7: (row start, column start, row step, column step) of the 7 passes.
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))
# Channels of each PNG colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_bytes(height, width, bit_depth, colour_type, interlaced=False, seed=0):
    """A PNG of random samples in any bit depth, colour type and interlacing."""
    shape = (height, width, _PNG_CHANNELS[colour_type])
    palette_size = 2**bit_depth if colour_type == 3 else 0
    samples = _random_samples(shape, seed, (palette_size or 2**bit_depth) - 1, np.uint16)
    if interlaced:
        raw = b"".join(
            _png_rows(samples[rows::row_step, columns::column_step], bit_depth)
            for rows, columns, row_step, column_step in _ADAM7
            if samples[rows::row_step, columns::column_step].size
        )
    else:
        raw = _png_rows(samples, bit_depth)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, int(interlaced)))]
    if palette_size:
        chunks.append(_png_chunk(b"PLTE", _random_samples(3 * palette_size, seed + 1).tobytes()))
    chunks += [_png_chunk(b"IDAT", zlib.compress(raw)), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def bmp_bytes(height, width, bits, compression=0, top_down=False, info_header=40, seed=0):
    """A BMP with random pixels; RLE data is random runs ending the bitmap."""
    palette_size = 2**bits if bits <= 8 else 0
    masks = b""
    if compression == 3:
        masks = struct.pack("<III", *((0xF800, 0x07E0, 0x001F) if bits == 16 else (0xFF0000, 0xFF00, 0xFF)))
    row_bytes = (bits * width + 31) // 32 * 4
    if compression in (1, 2):
        runs = _random_samples((height, 2), seed).astype(np.uint8)
        runs[:, 0] = np.maximum(runs[:, 0] % 32, 1)
        pixels = runs.tobytes() + b"\x00\x01"
    else:
        pixels = _random_samples(row_bytes * height, seed).tobytes()
    palette = _random_samples(4 * palette_size, seed + 1).tobytes()
    if info_header == 12:
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
        palette = _random_samples(3 * palette_size, seed + 1).tobytes()
    else:
        info = struct.pack(
            "<IiiHHIIiiII", info_header, width, -height if top_down else height, 1, bits,
            compression, len(pixels), 2835, 2835, palette_size, 0,
        )
        extra = info_header - 40
        info += masks + bytes(max(extra - len(masks), 0)) if extra else masks
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def netpbm_bytes(height, width, magic, maxval, seed=0, comment=b""):
    channels = 3 if magic == b"P6" else 1
    samples = _random_samples((height, width, channels), seed, maxval, np.uint16)
    raster = samples.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    return b"%s\n%s%d %d\n%d\n" % (magic, comment, width, height, maxval) + raster


def _pil_bytes(image_format, image, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _pil_seeds():
    from PIL import Image
    from PIL import features

    rgb = Image.fromarray(_random_samples((13, 17, 3), 5))
    frames = [Image.fromarray(_random_samples((9, 11, 3), seed)) for seed in range(3)]
    seeds = [
        ("JPEG", "baseline RGB", _pil_bytes("JPEG", rgb)),
        ("JPEG", "grey", _pil_bytes("JPEG", rgb.convert("L"))),
        ("JPEG", "progressive", _pil_bytes("JPEG", rgb, progressive=True)),
        ("JPEG", "4:4:4 optimised", _pil_bytes("JPEG", rgb, subsampling=0, optimize=True)),
        ("JPEG", "CMYK", _pil_bytes("JPEG", rgb.convert("CMYK"))),
        ("GIF", "still", _pil_bytes("GIF", rgb.convert("P"))),
        ("GIF", "grey with transparency", _pil_bytes("GIF", rgb.convert("L"), transparency=0)),
        ("GIF", "animated", _pil_bytes("GIF", frames[0], save_all=True, append_images=frames[1:], duration=40)),
    ]
    if features.check("webp"):
        seeds += [
            ("WebP", "lossy", _pil_bytes("WEBP", rgb)),
            ("WebP", "lossless", _pil_bytes("WEBP", rgb, lossless=True)),
            ("WebP", "with alpha", _pil_bytes("WEBP", rgb.convert("RGBA"))),
            ("WebP", "animated", _pil_bytes("WEBP", frames[0], save_all=True, append_images=frames[1:], duration=40)),
        ]
    return seeds


def seed_images():
    """``(format, variant, bytes)`` of a valid file of each variant."""
    seeds = []
    for colour_type, depths in ((0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))):
        for bit_depth in depths:
            for interlaced in (False, True):
                variant = f"colour type {colour_type}, {bit_depth}-bit{', interlaced' if interlaced else ''}"
                seeds.append(("PNG", variant, png_bytes(11, 13, bit_depth, colour_type, interlaced)))
    for bits, compression in ((1, 0), (4, 0), (4, 2), (8, 0), (8, 1), (16, 0), (16, 3), (24, 0), (32, 0), (32, 3)):
        for top_down in (False, True):
            variant = f"{bits}-bit, compression {compression}{', top-down' if top_down else ''}"
            seeds.append(("BMP", variant, bmp_bytes(7, 9, bits, compression, top_down)))
    seeds += [
        ("BMP", "24-bit, OS/2 header", bmp_bytes(7, 9, 24, info_header=12)),
        ("BMP", "32-bit bit fields, V5 header", bmp_bytes(7, 9, 32, 3, info_header=124)),
    ]
    for magic in (b"P6", b"P5"):
        for maxval in (1, 17, 255, 256, 1000, 65535):
            seeds.append(("PPM/PGM", f"{magic.decode()} maxval {maxval}", netpbm_bytes(6, 5, magic, maxval)))
    seeds.append(("PPM/PGM", "P6 with comments", netpbm_bytes(6, 5, b"P6", 255, comment=b"# a\n# b\n")))
    return seeds + _pil_seeds()


# --- Mutations. ------------------------------------------------------------


def _header_fields(image_format, data):
    """``(offset, struct format)`` of the header fields a decoder believes."""
    if image_format == "PNG":
        return [(16, ">i"), (20, ">i"), (24, "B"), (25, "B"), (28, "B")]
    if image_format == "BMP":
        return [(2, "<i"), (10, "<i"), (14, "<i"), (18, "<i"), (22, "<i"), (28, "<h"), (30, "<i"), (46, "<i"), (54, "<i")]
    if image_format == "GIF":
        fields = [(6, "<H"), (8, "<H"), (10, "B")]
        descriptor = data.find(b",", 13)
        if descriptor > 0:
            fields += [(descriptor + 1, "<H"), (descriptor + 3, "<H"), (descriptor + 5, "<H"), (descriptor + 7, "<H"), (descriptor + 9, "B")]
        return fields
    if image_format == "JPEG":
        fields = []
        for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc4", b"\xff\xda", b"\xff\xdb"):
            position = data.find(marker)
            if position > 0:
                fields += [(position + 2, ">H"), (position + 4, "B"), (position + 5, ">H"), (position + 7, ">H"), (position + 9, "B")]
        return fields
    if image_format == "WebP":
        return [(4, "<i"), (16, "<i"), (20, "B"), (21, "<i"), (24, "<i"), (26, "<H"), (28, "<H")]
    return []


def _set_field(data, offset, layout, value):
    size = struct.calcsize(layout)
    if offset + size > len(data):
        return data
    kind = layout[-1]
    bits = 8 * size
    if kind in "BH" or kind == "I":
        value %= 2**bits
    else:
        value = (value + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
    return data[:offset] + struct.pack(layout, value) + data[offset + size:]


def _fix_png_crcs(data):
    """Recomputes every chunk's CRC, so that libpng reads past it."""
    position, chunks = 8, [data[:8]]
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        end = position + 12 + length
        if end > len(data):
            chunks.append(data[position:])
            break
        body = data[position + 4:end - 4]
        chunks.append(data[position:position + 4] + body + struct.pack(">I", zlib.crc32(body)))
        position = end
    else:
        chunks.append(data[position:])
    return b"".join(chunks)


def _netpbm_header_mutant(random, data):
    """A netpbm file whose header numbers are rewritten."""
    magic = data[:2]
    numbers = [random.choice(["0", "-1", "1", "65535", "65536", "4294967297", "9" * 30, "x", ""]) for _ in range(3)]
    raster = data[data.index(b"\n", data.index(b"\n", 3) + 1) + 1:]
    return b"%s\n%s %s\n%s\n" % (magic, numbers[0].encode(), numbers[1].encode(), numbers[2].encode()) + raster


def mutate(image_format, data, random):
    """One structural mutation of ``data``: ``(description, bytes)``."""
    kind = random.choice(["field", "field", "field", "truncate", "append", "flip", "flip_header"])
    if image_format == "PPM/PGM" and kind == "field":
        return "netpbm header numbers", _netpbm_header_mutant(random, data)
    fields = _header_fields(image_format, data)
    if kind == "field" and fields:
        mutated = data
        names = []
        for _ in range(random.randint(1, 2)):
            offset, layout = fields[random.randrange(len(fields))]
            value = random.choice(INTERESTING_INTEGERS)
            mutated = _set_field(mutated, offset, layout, value)
            names.append(f"{layout}@{offset}={value}")
        if image_format == "PNG":
            mutated = _fix_png_crcs(mutated)
        return "field " + " ".join(names), mutated
    if kind == "truncate":
        length = random.randrange(len(data))
        return f"truncated to {length} bytes", data[:length]
    if kind == "append":
        garbage = bytes(random.getrandbits(8) for _ in range(random.choice([1, 7, 100, 5000])))
        return f"{len(garbage)} bytes appended", data + garbage
    end = min(len(data), 64) if kind == "flip_header" else len(data)
    mutated = bytearray(data)
    flips = random.randint(1, 16)
    for _ in range(flips):
        mutated[random.randrange(end)] = random.getrandbits(8)
    if image_format == "PNG" and random.random() < 0.5:
        return f"{flips} bytes flipped, CRCs fixed", _fix_png_crcs(bytes(mutated))
    return f"{flips} bytes flipped", bytes(mutated)


def fuzz_cases(count, seed=0):
    """``count`` cases ``(format, description, bytes)``: every seed once, then mutants."""
    import random as random_module

    random = random_module.Random(seed)
    seeds = seed_images()
    cases = [(image_format, f"{variant}: valid", data) for image_format, variant, data in seeds]
    while len(cases) < count:
        image_format, variant, data = seeds[random.randrange(len(seeds))]
        description, mutated = mutate(image_format, data, random)
        cases.append((image_format, f"{variant}: {description}", mutated))
    return cases[:count]


# --- The child process. ----------------------------------------------------


def _write_cases(path, cases):
    with open(path, "wb") as file:
        for _, _, data in cases:
            file.write(struct.pack("<I", len(data)) + data)


def _read_cases(path):
    with open(path, "rb") as file:
        content = file.read()
    position = 0
    while position < len(content):
        (length,) = struct.unpack("<I", content[position:position + 4])
        yield content[position + 4:position + 4 + length]
        position += 4 + length


def _child(saved_model_dir, cases_path):
    """Calls ``predict_bytes`` on each case; prints one line per case."""
    import tensorflow as tf

    signature = tf.saved_model.load(saved_model_dir).signatures["predict_bytes"]
    for index, data in enumerate(_read_cases(cases_path)):
        try:
            signature(image_bytes=tf.constant([data]))
            outcome = DECODED
        except tf.errors.OpError as error:
            message = " ".join(str(error.message).split())[:500]
            outcome = f"{REFUSED}\t{type(error).__name__}\t{message}"
        print(f"{index}\t{outcome}", flush=True)


def run_in_child(saved_model_dir, cases, timeout_s=600):
    """Runs ``cases`` through ``predict_bytes`` in a child Python process.

    Args:
        saved_model_dir: a SavedModel with a ``predict_bytes`` signature.
        cases: ``(format, description, bytes)`` as `fuzz_cases` makes.
        timeout_s: how long the child may take.

    Returns:
        ``(returncode, outcomes, output)``: the child's exit status (negative
        for a signal), one ``(DECODED or REFUSED, error class, message)`` per
        case it finished, in order, and what it printed beside them.
    """
    with tempfile.TemporaryDirectory() as folder:
        cases_path = os.path.join(folder, "cases.bin")
        _write_cases(cases_path, cases)
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), saved_model_dir, cases_path],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        )
    outcomes = []
    for line in child.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == str(len(outcomes)):
            outcomes.append((fields[1], *fields[2:4]) if len(fields) > 2 else (fields[1], "", ""))
    return child.returncode, outcomes, child.stderr


if __name__ == "__main__":
    _child(*sys.argv[1:3])
