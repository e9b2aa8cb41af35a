"""Loopback stand-ins for the external services the tests talk to, driven by the real client SDKs over real HTTP:

- ``azure_openai``: Azure OpenAI (data plane, files, fine-tuning jobs) and its ARM deployments;
- ``azureml``: an Azure ML workspace (jobs run on this machine, datastore in Azurite), and Azurite itself;
- ``openai_chat``: OpenAI-compatible ``/v1/chat/completions`` endpoints (a streaming model server, an LLM judge);
- ``loopback``: the threaded HTTP server and recording handler the Azure fakes share.
"""
