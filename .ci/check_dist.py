"""Check what `python -m build` made: usage ``python .ci/check_dist.py DIST_DIR``.

The sdist must carry every tracked file a user needs to run the tests and examples (all of
tests/ and examples/, LICENSE, README), and both the sdist and the wheel must carry
``py.typed`` (the package is annotated) and every module of the package.
"""

import pathlib
import subprocess
import sys
import tarfile
import zipfile

dist = pathlib.Path(sys.argv[1])
(sdist_path,) = dist.glob("*.tar.gz")
(wheel_path,) = dist.glob("*.whl")
with tarfile.open(sdist_path) as sdist:
    in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
in_wheel = set(zipfile.ZipFile(wheel_path).namelist())

tracked = subprocess.run(
    ["git", "ls-files", "tests", "examples", "loghandlers"],
    capture_output=True,
    text=True,
    check=True,
).stdout.split()
need_in_sdist = ["LICENSE", "README.md", "setup.cfg", "pyproject.toml", ".ci/run", *tracked]
problems = [f"sdist lacks {name}" for name in need_in_sdist if name not in in_sdist]
package_files = [name for name in tracked if name.startswith("loghandlers/")]
problems += [f"wheel lacks {name}" for name in package_files if name not in in_wheel]
if "loghandlers/py.typed" not in package_files:
    problems.append("loghandlers/py.typed is not tracked")
if not any(name.endswith("/licenses/LICENSE") or name.endswith("/LICENSE") for name in in_wheel):
    problems.append("wheel lacks LICENSE")
for problem in problems:
    print(problem)
if problems:
    sys.exit(1)
print(
    f"{sdist_path.name}: {len(in_sdist)} files, {wheel_path.name}: {len(in_wheel)} files;"
    " tests/, examples/, LICENSE, py.typed in both where they belong"
)
