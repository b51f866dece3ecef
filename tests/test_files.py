"""steering_agent.common.files.write_text_atomic: readers and writers side by side."""

from __future__ import annotations

import threading

from steering_agent.common.files import write_text_atomic


def test_writers_side_by_side_never_tear_or_lose_the_file(tmp_path):
    path = tmp_path / "index.json"
    texts = [f"{name * 5000}\n" for name in "abcd"]
    errors: list[BaseException] = []
    seen: set[str] = set()
    go = threading.Event()

    def write(text: str) -> None:
        go.wait()
        try:
            for _ in range(200):
                write_text_atomic(path, text)
        except BaseException as e:  # a shared temporary name: FileNotFoundError here
            errors.append(e)

    def read() -> None:
        go.wait()
        for _ in range(400):
            if path.exists():
                seen.add(path.read_text("utf8"))

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert path.read_text("utf8") in texts
    assert seen <= set(texts)  # a reader only ever saw a whole file
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]  # no temporary left
