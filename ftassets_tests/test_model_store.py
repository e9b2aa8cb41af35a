"""The model store: a real PEFT adapter round-trips through the local store and through Azure Blob Storage
(Azurite on 127.0.0.1, started here with telemetry off, reached through dagster-azure's AzureBlobStorageResource)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fakes.azureml import AZURITE, DEV_KEY
from fakes.azureml import azurite as run_azurite


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not AZURITE.exists():
        pytest.skip(f"{AZURITE} missing: run `bash scripts/install_test_tools.sh` (the README's test command does)")
    with run_azurite(tmp_path_factory.mktemp("azurite")) as url:
        yield url


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_base_dir):
    """A LoRA adapter of the tiny base, saved by peft (adapter_config.json + adapter_model.safetensors)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_base_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(out)
    (out / "checkpoint" / "notes").mkdir(parents=True)
    (out / "checkpoint" / "notes" / "trainer_state.json").write_text('{"global_step": 3}')
    return out


def _lora_weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(directory / "adapter_model.safetensors")


def _assert_same_adapter(original: Path, copy: Path, tiny_base_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    expected, actual = _lora_weights(original), _lora_weights(copy)
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)
    assert (copy / "checkpoint" / "notes" / "trainer_state.json").read_text() == '{"global_step": 3}'
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base_dir), copy)
    assert any("lora_A" in name for name, _ in loaded.named_parameters())


def test_an_adapter_round_trips_through_azure_blob_storage(azurite, adapter_dir, tiny_base_dir, tmp_path):
    from dagster_azure.blob import AzureBlobStorageKeyCredential, AzureBlobStorageResource

    from ftassets.defs.resources import BlobModelStoreResource
    from ftassets.storage import StoreError

    resource = BlobModelStoreResource(
        blob_storage=AzureBlobStorageResource(
            account_url=azurite, credential=AzureBlobStorageKeyCredential(key=DEV_KEY)
        ),
        container="models",
        prefix="ftassets",
    )
    with resource.store() as store:
        assert not store.exists("adapter/tiny-lora/classification")
        stored = store.upload(adapter_dir, "adapter/tiny-lora/classification")
        assert stored.location.endswith("/models/ftassets/adapter/tiny-lora/classification")
        assert {"adapter_config.json", "adapter_model.safetensors", "checkpoint/notes/trainer_state.json"} <= set(
            stored.files
        )
        fetched = store.download("adapter/tiny-lora/classification", tmp_path / "fetched")
        assert fetched.files == stored.files
        _assert_same_adapter(adapter_dir, tmp_path / "fetched", tiny_base_dir)

        blob = store.container.get_blob_client("ftassets/adapter/tiny-lora/classification/adapter_config.json")
        blob.upload_blob(b"{}", overwrite=True)
        with pytest.raises(StoreError, match="do not match the index \\(adapter_config.json\\)"):
            store.download("adapter/tiny-lora/classification", tmp_path / "damaged")
        assert not (tmp_path / "damaged").exists(), "a damaged download leaves nothing behind"

        store.delete("adapter/tiny-lora/classification")
        assert not store.exists("adapter/tiny-lora/classification")
        assert not list(store.container.list_blobs(name_starts_with="ftassets/adapter/"))
        with pytest.raises(StoreError, match="no stored artifact"):
            store.download("adapter/tiny-lora/classification", tmp_path / "gone")


def test_the_local_store_has_the_same_interface(adapter_dir, tiny_base_dir, tmp_path):
    from ftassets.defs.resources import LocalModelStoreResource
    from ftassets.storage import StoreError

    with LocalModelStoreResource(root=str(tmp_path / "store")).store() as store:
        store.upload(adapter_dir, "adapter/tiny-lora/classification")
        store.upload(adapter_dir, "adapter/tiny-lora/classification")
        store.download("adapter/tiny-lora/classification", tmp_path / "fetched")
        _assert_same_adapter(adapter_dir, tmp_path / "fetched", tiny_base_dir)
        assert sorted(p.name for p in (tmp_path / "store" / "adapter" / "tiny-lora").iterdir()) == ["classification"]
        with pytest.raises(StoreError, match="use path segments"):
            store.upload(adapter_dir, "../escape")
        with pytest.raises(StoreError, match="already exists"):
            store.download("adapter/tiny-lora/classification", tmp_path / "fetched")


def test_the_publish_job_uploads_a_materialized_adapter_to_blob_storage(azurite, adapter_dir, tmp_path):
    import dagster as dg
    from dagster_azure.blob import AzureBlobStorageKeyCredential, AzureBlobStorageResource

    from ftassets.artifacts import ArtifactStore, write_manifest
    from ftassets.defs.publishing import publish_to_model_store
    from ftassets.defs.resources import ArtifactStoreResource, BlobModelStoreResource

    artifacts = ArtifactStore(tmp_path / "home")
    with artifacts.writing(artifacts.path("adapter", "tiny-lora", "classification")) as staging:
        shutil.copytree(adapter_dir, staging, dirs_exist_ok=True)
        write_manifest(staging, asset="adapter", fingerprint="abc")
    store_resource = BlobModelStoreResource(
        blob_storage=AzureBlobStorageResource(
            account_url=azurite, credential=AzureBlobStorageKeyCredential(key=DEV_KEY)
        ),
        container="published",
    )
    result = publish_to_model_store.execute_in_process(
        run_config={"ops": {"publish_artifact": {"config": {"model": "tiny-lora", "task": "classification"}}}},
        resources={"artifacts": ArtifactStoreResource(root=str(tmp_path / "home")), "model_store": store_resource},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and result.output_for_node("publish_artifact").endswith(
        "/published/adapter/tiny-lora/classification"
    )
    with store_resource.store() as store:
        assert "manifest.json" in store.index("adapter/tiny-lora/classification").files
    missing = publish_to_model_store.execute_in_process(
        run_config={"ops": {"publish_artifact": {"config": {"model": "tiny-full", "task": "classification"}}}},
        resources={"artifacts": ArtifactStoreResource(root=str(tmp_path / "home")), "model_store": store_resource},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not missing.success
    from ftassets.runner import root_cause_message

    error = missing.get_step_failure_events()[0].step_failure_data.error
    assert "no materialized adapter for tiny-full/classification; materialize it first" in root_cause_message(error)
