from ftassets.config.loader import ConfigError, ProjectConfig, ResolvedTask, default_config_dir, load_project_config

__all__ = ["ConfigError", "ProjectConfig", "ResolvedTask", "default_config_dir", "load_project_config"]
