"""The one error type for bad user input in dataset files."""


class DatasetError(ValueError):
    """A dataset file, image or mask is missing or not what was expected.

    The message always names the file (and the instance, where there is one) and says what was
    expected, so the CLI and the GUI can show it as it is.
    """
