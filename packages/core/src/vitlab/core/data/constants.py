"""Constants shared by every data pipeline in vitlab."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Pixels without ground truth: +inf for continuous targets (disparity, depth), this id for labels.
IGNORE_INDEX = 255
