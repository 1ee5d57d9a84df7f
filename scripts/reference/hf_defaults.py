"""Prints, as JSON, the defaults of transformers.TrainingArguments that clm's
[train] defaults take over (read from the dataclass fields, without building
TrainingArguments, which would need accelerate)."""
import dataclasses
import json

from transformers import TrainingArguments

KEYS = ["adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm"]

fields = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
print(json.dumps({k: fields[k] for k in KEYS}))
