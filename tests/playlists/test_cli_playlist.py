"""``python -m realtime.client playlist``: two people edit one playlist at once
from two terminal clients on two server processes. Each client's every
printed list is exactly the server's list at that revision, and the history
holds both people's edits."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from playlists.models import PlaylistOp
from playlists.selectors import playlist_state_at
from tests.conftest import ROOT, subprocess_env
from tests.factories import DEFAULT_PASSWORD
from tests.realtime.client_support import RestartableDaphne

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REVISION = re.compile(r"^rev (\d+) by (\w+): ")
ITEM = re.compile(r"^\s*(\d+)\. (.+)$")


def printed_revisions(stdout: str) -> dict[int, list[str]]:
    """Each ``rev N`` block of the output: the track names listed after it."""
    revisions: dict[int, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if match := REVISION.match(line):
            current = revisions.setdefault(int(match.group(1)), [])
        elif (match := ITEM.match(line)) and current is not None:
            current.append(match.group(2))
        else:
            current = None
    return revisions


@pytest.mark.usefixtures("transactional_db", "user", "bob")
def test_two_terminal_clients_edit_one_playlist_and_agree(tmp_path, playlist, tracks):
    first = RestartableDaphne(tmp_path, name="first")
    second = RestartableDaphne(tmp_path, name="second")
    first.start()
    second.start()
    try:
        env = subprocess_env(HUB_PASSWORD=DEFAULT_PASSWORD)

        def client(server, username, commands: str):
            # Commands come from a file, so both clients start typing at once.
            script = tmp_path / f"{username}.txt"
            script.write_text(commands)
            command = [sys.executable, "-m", "realtime.client", "playlist", "--url", server.url]
            command += ["--username", username, "--playlist", str(playlist.pk)]
            with open(script) as stdin:
                return subprocess.Popen(
                    command, cwd=ROOT, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )

        alice = client(
            first, "alice", "".join(f"add {track.pk} 0\n" for track in tracks[:4]) + "mv 0 3\ntitle Alice was here\n"
        )
        bobs = client(second, "bob", "".join(f"add {track.pk}\n" for track in tracks[4:8]) + "rm 0\nlist\n")
        alice_out, alice_err = alice.communicate(timeout=60)
        bob_out, bob_err = bobs.communicate(timeout=60)
        assert alice.returncode == 0, alice_err
        assert bobs.returncode == 0, bob_err
    finally:
        first.stop()
        second.stop()

    playlist.refresh_from_db()
    names = {track.pk: f"{track.artist} - {track.title}" for track in tracks}
    for output in (alice_out, bob_out):
        revisions = printed_revisions(output)
        assert revisions, output
        for revision, listed in revisions.items():
            state = playlist_state_at(playlist=playlist, revision=revision)
            assert listed == [names[item["track_id"]] for item in state.items]
    authors = set(
        PlaylistOp.objects.filter(playlist=playlist, revision__isnull=False).values_list("actor__username", flat=True)
    )
    assert authors == {"alice", "bob"}
    assert playlist.title == "Alice was here"
    assert playlist.revision == 11
