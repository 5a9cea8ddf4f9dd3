"""The models ``thyrocam cv`` can score (names shared by the runner and the CLI)."""

CV_MODELS = ("both", "image", "clinical", "descriptor_lr", "outline_lr")
