"""Convert an offline backbone in a checkout (`make backbone`): `covid-cxr convert-backbone`.

python train/convert_backbone.py --name dinov2-small-imgfocus --output_root build/backbones
"""

from covid_cxr.cli.convert_backbone import main

if __name__ == "__main__":
    main(prog="python train/convert_backbone.py")
