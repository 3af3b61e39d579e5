"""Synthetic scenes: category ids and the base-unit geometry every module shares."""

from hybrid_jax.data import categories

SKY, ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PERSON = range(8)
DIV = categories.LABEL_DIVISOR
BASE_H = 128.0   # scene height in base units
HORIZON = 64.0   # building bottoms / sidewalk top (base units, world y)
CURB = 80.0      # sidewalk bottom / road top
MIN_SIZE = 16    # smallest height/width accepted (pixels)
