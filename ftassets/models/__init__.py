"""Base models: the embedded model the project builds itself (``embedded``, ``corpus``) and base preparation
(``bases``). Modules are imported where used, so importing this package stays free of torch and transformers.
"""
