"""``thyrocam pacs explain``: explain a study's ultrasound on a PACS, store the results back."""

from __future__ import annotations

import argparse
import json
import logging

from thyrocam.cli._common import add_method_option, load_predictor, parse_clinical

__all__ = ["register"]


def _cmd_pacs_explain(args: argparse.Namespace) -> int:
    from thyrocam.dicom.pacs import explain_study

    if not args.verbose:
        # dicomweb-client narrates every request at INFO; thyrocam's own lines suffice.
        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    predictor = load_predictor(args)
    results = explain_study(
        url=args.url,
        study_uid=args.study,
        predictor=predictor,
        store=args.store,
        clinical=parse_clinical(args.clinical),
        frame=args.frame,
        method=args.method,
        target=args.target,
    )
    print(json.dumps([r.to_dict() for r in results], indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    pacs = sub.add_parser("pacs", help="work with a PACS over DICOMweb")
    actions = pacs.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "explain",
        help="find a study's ultrasound (QIDO-RS), fetch (WADO-RS), explain, "
        "and with --store send the SC and SR back (STOW-RS)",
    )
    p.add_argument("run")
    p.add_argument(
        "--url", required=True, help="DICOMweb base URL, e.g. http://pacs:8042/dicom-web"
    )
    p.add_argument("--study", required=True, help="StudyInstanceUID")
    p.add_argument("--store", action="store_true", help="store the SC and SR in the study")
    p.add_argument("--frame", type=int, default=0, help="frame of multi-frame instances (from 0)")
    p.add_argument("--clinical", nargs="*", metavar="FIELD=VALUE", help="descriptors")
    p.add_argument("--target", choices=("malignant", "benign"), default="malignant")
    add_method_option(p)
    p.add_argument("--device")
    p.set_defaults(func=_cmd_pacs_explain)
