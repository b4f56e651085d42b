"""Dataset files: COCO, Cityscapes and labelme in and out, mask conversions, atomic writes."""
