"""Prints the datasets tables that data/corpus/datafiles.go copies, as JSON."""
import json

from datasets import data_files as df
from datasets.packaged_modules import (_ALL_ALLOWED_EXTENSIONS, _ALL_METADATA_EXTENSIONS, _ALL_METADATA_FILENAMES,
                                       _MODULE_TO_EXTENSIONS)

print(json.dumps({
    "allowed": _ALL_ALLOWED_EXTENSIONS,
    "metadata_files": _ALL_METADATA_FILENAMES,
    "metadata_extensions": _ALL_METADATA_EXTENSIONS,
    "json": [e for e in _MODULE_TO_EXTENSIONS["json"] if e != ".zip"],
    "parquet": [e for e in _MODULE_TO_EXTENSIONS["parquet"] if e != ".zip"],
    "ignore": df.FILES_TO_IGNORE,
    "sharded": df.SPLIT_PATTERN_SHARDED,
    "keywords": {str(k): v for k, v in df.SPLIT_KEYWORDS.items()},
    "in_dir": df.KEYWORDS_IN_DIR_NAME_BASE_PATTERNS,
    "in_name": df.KEYWORDS_IN_FILENAME_BASE_PATTERNS,
    "sep": df.NON_WORDS_CHARS,
}))
