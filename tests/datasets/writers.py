"""Writers of small data files in the real formats, for the reader and loader tests."""
import gzip
import io
import os
import zipfile

import numpy as np
from PIL import Image
from scipy.io import savemat

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def write_idx(path, array, gz=False):
    array = np.asarray(array)
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    header = bytes([0, 0, IDX_CODES[kind], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    content = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(content)
    return path


def write_amat(path, binary_rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in binary_rows:
            f.write(" ".join(str(int(v)) for v in row) + "\n")
    return path


def write_chardata(path, train_images, test_images):
    """Burda's layout: float [784, n], each image flattened column-major."""
    def columns(images):
        return np.stack([image.flatten(order="F") for image in images], axis=1).astype(np.float64)

    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {"data": columns(train_images), "testdata": columns(test_images)})
    return path


def png_bytes(ink):
    """``ink`` bool [105, 105] -> black-on-white 1-bit PNG, like Lake et al.'s files."""
    buffer = io.BytesIO()
    Image.fromarray(~np.asarray(ink, dtype=bool)).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_omniglot_zip(path, set_name, files):
    """``files``: {(alphabet, character, file name): ink [105, 105]}."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for (alphabet, character, name), ink in files.items():
            archive.writestr(f"{set_name}/{alphabet}/{character}/{name}", png_bytes(ink))
    return path


def stroke(column_from, column_to):
    """A vertical band of ink over the columns [column_from, column_to) of a 105x105 image."""
    ink = np.zeros((105, 105), dtype=bool)
    ink[:, column_from:column_to] = True
    return ink
