"""OCR (text detection + recognition): the task package in the making (issue 14). Its metrics are here; it is
not registered in factory.tasks.INSTALLED until it can train, so the chat and the CLI do not offer it yet."""
