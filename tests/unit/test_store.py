"""The operator's stores: indexes follow every object's latest version, whichever watch brings it first; a listing
replaces; a deleted object's late events do not bring it back."""

from modelplane_operator.store import Store, newer


def obj(name, version, model="m", namespace="ns"):
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": str(version),
                         "labels": {"model": model}}}


def store():
    return Store("pods", lambda ns: f"/api/v1/namespaces/{ns}/pods" if ns else "/api/v1/pods",
                 {"name": lambda o: {(o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]},
                  "model": lambda o: {(o["metadata"]["namespace"], o["metadata"]["labels"]["model"]): o["metadata"]["name"]}})


def test_newest_version_wins_whichever_arrives_first():
    s = store()
    assert s.offer(obj("p", 5))
    assert not s.offer(obj("p", 4))  # the other watch, late
    assert not s.offer(obj("p", 5))
    assert s.offer(obj("p", 6))
    assert s["name"].get(("ns", "p")) == ["6"]


def test_an_object_that_moves_between_keys_leaves_the_old_one():
    s = store()
    s.offer(obj("p", 1, model="a"))
    s.offer(obj("q", 1, model="a"))
    s.offer(obj("p", 2, model="b"))
    assert s["model"].get(("ns", "a")) == ["q"] and s["model"].get(("ns", "b")) == ["p"]
    assert sorted(s["model"]) == [("ns", "a"), ("ns", "b")] and ("ns", "b") in s["model"]


def test_a_deleted_object_is_not_brought_back_by_an_older_event():
    s = store()
    s.offer(obj("p", 5))
    s.remove(obj("p", 7))
    assert s["name"].get(("ns", "p")) == () and s["model"].get(("ns", "m"), None) is None
    assert not s.offer(obj("p", 6))  # kopf's event of an older version, after the store's DELETED
    assert s.offer(obj("p", 8))  # re-created
    assert s["name"].get(("ns", "p")) == ["8"]


def test_a_listing_replaces_what_the_store_held_in_its_scope_and_marks_it_synced():
    s = Store("pods", lambda ns: f"/api/v1/namespaces/{ns}/pods", {"name": lambda o: {o["metadata"]["name"]: 1}},
              namespaces=["a", "b"])
    s.offer(obj("gone", 1, namespace="a"))
    s.offer(obj("other", 1, namespace="b"))
    s.replace("a", [obj("kept", 3, namespace="a")])
    assert sorted(s["name"]) == ["kept", "other"] and not s.synced.is_set()
    s.replace("b", [])
    assert list(s["name"]) == ["kept"] and s.synced.is_set()


def test_resource_versions_compare_as_numbers():
    assert newer("10", "9") and not newer("9", "10") and not newer("9", "9")
    assert newer("x", "9")  # never seen: the latest event wins


def listening(s):
    heard = []
    s.listen(lambda type_, o: heard.append((type_, o["metadata"]["name"], o["metadata"].get("resourceVersion"),
                                            o.get("kind"))))
    return heard


def test_watch_events_reach_the_listeners_once_kept(monkeypatch):
    s = store()
    heard = listening(s)
    s.replace(None, [obj("p", 5)])  # the first listing is the start: nobody is told
    events = [{"type": "MODIFIED", "object": obj("p", 4)},  # older than kept (kopf's watch ran ahead): not told
              {"type": "MODIFIED", "object": obj("p", 6)},
              {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
              {"type": "DELETED", "object": obj("p", 8)},
              {"type": "ERROR", "object": {"code": 410}}]
    monkeypatch.setattr("modelplane_operator.store.kube.watch", lambda *a, **k: iter(events))
    s._watch("/api/v1/pods", {}, "5")
    assert heard == [("MODIFIED", "p", "6", None), ("DELETED", "p", "8", None)]


def test_a_relisting_tells_what_changed_meanwhile_and_what_went():
    s = store()
    heard = listening(s)
    s.kind = "Pod"
    s.replace(None, [obj("same", 1), obj("changed", 1), obj("gone", 1, model="x")])
    assert heard == []
    s.replace(None, [obj("same", 1), obj("changed", 2), obj("new", 3)])
    assert sorted(heard) == [("DELETED", "gone", None, "Pod"), ("MODIFIED", "changed", "2", None),
                             ("MODIFIED", "new", "3", None)]


def test_a_deletion_stub_carries_the_labels_its_owner_is_found_by():
    s = store()
    stubs = []
    s.listen(lambda type_, o: stubs.append(o))
    s.replace(None, [obj("gone", 1, model="x")])
    s.replace(None, [])
    assert stubs[0]["metadata"] == {"namespace": "ns", "name": "gone", "labels": {"model": "x"}}


def test_a_failing_listener_does_not_stop_the_others():
    s = store()
    heard = listening(s)
    s.listen(lambda *_: 1 / 0)
    s.replace(None, [])
    s._tell("ADDED", obj("p", 1))
    s._tell("ADDED", obj("q", 1))
    assert [h[1] for h in heard] == ["p", "q"]


def test_shared_strings_is_an_equal_copy_whose_keys_and_short_values_are_shared():
    import json

    from modelplane_operator.store import SHARED_MAX, shared_strings
    text = json.dumps({"spec": {"containers": [{"image": "vllm/vllm-openai:v0.32.0", "args": ["--port", "8000", 3]}]},
                       "status": {"message": "x" * (SHARED_MAX + 1), "replicas": 1, "ready": None}})
    a, b = json.loads(text), json.loads(text)
    shared_a, shared_b = shared_strings(a), shared_strings(b)
    assert shared_a == a and shared_a is not a and a == json.loads(text)  # equal, a copy, the input untouched
    image_a, image_b = (s["spec"]["containers"][0]["image"] for s in (shared_a, shared_b))
    assert image_a is image_b and next(iter(shared_a["spec"])) is next(iter(shared_b["spec"]))  # one string object
    assert shared_a["status"]["message"] is not shared_b["status"]["message"]  # long strings are left apart
