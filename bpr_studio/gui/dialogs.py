"""The Open and Export dialogs."""

from __future__ import annotations

from PyQt5 import QtWidgets

from ..io.formats import FORMATS
from ..session import UNREVIEWED_CHOICES


def _path_row(dialog: QtWidgets.QWidget, edit: QtWidgets.QLineEdit, pick) -> QtWidgets.QHBoxLayout:
    row = QtWidgets.QHBoxLayout()
    row.addWidget(edit, 1)
    button = QtWidgets.QPushButton("Browse...")
    button.clicked.connect(pick)
    row.addWidget(button)
    return row


class OpenDialog(QtWidgets.QDialog):
    """Dataset folder or file, optional annotations and predictions files, format."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Open dataset")
        form = QtWidgets.QFormLayout(self)
        self.path = QtWidgets.QLineEdit()
        self.annotations = QtWidgets.QLineEdit()
        self.predictions = QtWidgets.QLineEdit()
        self.format = QtWidgets.QComboBox()
        self.format.addItems(("auto",) + FORMATS)
        folder = QtWidgets.QPushButton("Folder...")
        folder.clicked.connect(lambda: self._pick_dir(self.path))
        path_row = _path_row(self, self.path, lambda: self._pick_file(self.path, "Dataset file (*.json)"))
        path_row.addWidget(folder)
        form.addRow("Dataset (folder or file)", path_row)
        form.addRow("Annotations (COCO, optional)",
                    _path_row(self, self.annotations, lambda: self._pick_file(self.annotations, "COCO (*.json)")))
        form.addRow("Predictions (optional)",
                    _path_row(self, self.predictions, lambda: self._pick_file(self.predictions, "COCO results (*.json)")))
        form.addRow("Format", self.format)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Open | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick_dir(self, edit):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Dataset folder", edit.text())
        if path:
            edit.setText(path)

    def _pick_file(self, edit, filters):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose a file", edit.text(), filters)
        if path:
            edit.setText(path)

    def values(self) -> dict:
        """Keyword arguments for MainWindow.open_dataset."""
        fmt = self.format.currentText()
        return {"path": self.path.text().strip(), "format": None if fmt == "auto" else fmt,
                "annotations": self.annotations.text().strip() or None,
                "predictions": self.predictions.text().strip() or None}


class ExportDialog(QtWidgets.QDialog):
    """Format, output path and what to do with unreviewed instances."""

    UNREVIEWED_LABELS = {"refined": "take the refined mask", "coarse": "keep the coarse mask", "omit": "leave them out"}

    def __init__(self, parent=None, default_out: str = "", default_format: str = "coco"):
        super().__init__(parent)
        self.setWindowTitle("Export dataset")
        form = QtWidgets.QFormLayout(self)
        self.format = QtWidgets.QComboBox()
        self.format.addItems(FORMATS)
        self.format.setCurrentText(default_format)  # the dataset's own format
        self.out = QtWidgets.QLineEdit(default_out)
        self.unreviewed = QtWidgets.QComboBox()
        for key in UNREVIEWED_CHOICES:
            self.unreviewed.addItem(self.UNREVIEWED_LABELS[key], key)
        self.unreviewed.setCurrentIndex(UNREVIEWED_CHOICES.index("coarse"))  # only what was reviewed changes
        form.addRow("Format", self.format)
        form.addRow("Output (COCO: .json file or folder for annotations.json; others: folder)",
                    _path_row(self, self.out, self._pick))
        form.addRow("Unreviewed instances", self.unreviewed)
        form.addRow(QtWidgets.QLabel("Accepted and edited instances take their final mask, rejected ones the coarse mask."))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Save | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Output folder", self.out.text())
        if path:
            self.out.setText(path)

    def values(self) -> dict:
        """Keyword arguments for MainWindow.export_dataset."""
        return {"out": self.out.text().strip(), "format": self.format.currentText(),
                "unreviewed": self.unreviewed.currentData()}
