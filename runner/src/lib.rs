//! Runner mode (`gosling runner`): installs, configures, updates, supervises and stops the GitLab Runner agent on every runner, and reports its health.
