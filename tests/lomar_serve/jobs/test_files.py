"""Where jobs keep their files by default: the user's data folder (XDG), never a source tree."""
from __future__ import annotations

from pathlib import Path

from lomar_serve.jobs.files import data_home, default_jobs_dir


def test_jobs_default_to_the_xdg_data_home() -> None:
    assert data_home({"XDG_DATA_HOME": "/srv/data", "HOME": "/home/ada"}) == Path("/srv/data/lomar")
    assert default_jobs_dir({"HOME": "/home/ada"}) == Path("/home/ada/.local/share/lomar/jobs")
    # a relative XDG_DATA_HOME is invalid by the XDG rule and ignored (it would land in the working directory)
    assert default_jobs_dir({"XDG_DATA_HOME": "data", "HOME": "/home/ada"}) == Path("/home/ada/.local/share/lomar/jobs")
