"""Test helper, run inside pattern 1's environment: turn a folder holding one
CSV into a DVC project whose remote is the test stack's S3, track the CSV
and push it. Bad-input tests then hand that file to the flow, so bad data
travels the same DVC path as good data.

    python make_dvc_project.py FOLDER FILE_NAME
"""

import os
import sys

from dvc.repo import Repo

folder, name = sys.argv[1], sys.argv[2]
repo = Repo.init(folder, no_scm=True)
with repo.config.edit() as conf:
    conf["core"]["remote"] = "storage"
    conf["remote"]["storage"] = {
        "url": f"s3://dvc/tests/{os.path.basename(folder)}",
        "endpointurl": os.environ["S3_ENDPOINT_URL"],
    }
repo = Repo(folder)
repo.add(os.path.join(folder, name))
repo.push()
print(f"tracked and pushed {name}")
