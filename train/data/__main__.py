"""python -m train.data prepare ...: see train/data/subimages.py."""

from train.data.subimages import main

main()
