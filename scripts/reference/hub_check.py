"""Reference for package hub: the official huggingface_hub client.

Usage: hub_check.py JOBS.json
JOBS is a list of actions, run in order with the environment the caller set
(HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE):

  {"op": "download", "type": T, "id": R, "revision": V}
      snapshot_download online; answers {"commit", "dir", "files": {path: sha256}}
  {"op": "offline", "type": T, "id": R, "revision": V, "files": [paths]}
      with local_files_only: hf_hub_download of each file and
      snapshot_download; answers {"dir", "files": {path: [local path, sha256]}}
  {"op": "scan"}
      scan_cache_dir(); answers {"warnings": [...], "repos": [{"type", "id",
      "revisions": [{"commit", "refs", "files": [names]}]}]}

Prints one JSON list of answers.
"""
import hashlib
import json
import os
import sys

from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def walk(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root).replace(os.sep, "/")] = sha256(p)
    return out


def run(job):
    op = job["op"]
    if op == "download":
        d = snapshot_download(job["id"], repo_type=job["type"], revision=job["revision"])
        return {"commit": os.path.basename(d), "dir": d, "files": walk(d)}
    if op == "offline":
        files = {}
        for f in job["files"]:
            p = hf_hub_download(job["id"], f, repo_type=job["type"], revision=job["revision"], local_files_only=True)
            files[f] = [p, sha256(p)]
        d = snapshot_download(job["id"], repo_type=job["type"], revision=job["revision"], local_files_only=True,
                              allow_patterns=job["files"])
        return {"dir": d, "files": files}
    if op == "scan":
        info = scan_cache_dir()
        repos = []
        for r in sorted(info.repos, key=lambda r: (r.repo_type, r.repo_id)):
            revs = [{"commit": v.commit_hash, "refs": sorted(v.refs),
                     "files": sorted(f.file_path.relative_to(v.snapshot_path).as_posix() for f in v.files)}
                    for v in sorted(r.revisions, key=lambda v: v.commit_hash)]
            repos.append({"type": r.repo_type, "id": r.repo_id, "revisions": revs})
        return {"warnings": [str(w) for w in info.warnings], "repos": repos}
    raise ValueError(op)


def main():
    jobs = json.load(open(sys.argv[1]))
    print(json.dumps([run(j) for j in jobs]))


if __name__ == "__main__":
    main()
