"""manage.py fuse: fuse a campaign's (or dataset's) annotations, report reliability, model bias and
anchoring, and settle the game points the new consensus allows."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations import consensus, fusion
from annotations.models import Dataset, FusedLabel, LabelClass
from gamification import selectors, services
from gamification.models import Campaign


class Command(BaseCommand):
    help = "Fuse the crowd's masks with reliability weights (all images jointly), then settle points."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--campaign", type=int, help="campaign id")
        target.add_argument("--dataset", help="dataset name")

    def handle(self, *args, **opts):
        campaign = None
        if opts["campaign"] is not None:
            campaign = Campaign.objects.filter(pk=opts["campaign"]).first()
            if campaign is None:
                raise CommandError(f"no campaign with id {opts['campaign']}")
            classes = list(campaign.label_classes.select_related("dataset"))
        else:
            dataset = Dataset.objects.filter(name=opts["dataset"]).first()
            if dataset is None:
                raise CommandError(f"no dataset named {opts['dataset']!r}")
            classes = list(LabelClass.objects.filter(dataset=dataset).select_related("dataset"))

        for label_class in classes:
            with tqdm(total=3, desc=str(label_class), unit="step") as bar:

                def step(what, bar=bar):
                    bar.set_postfix_str(what)
                    bar.update(1)

                result = consensus.fusion_run(label_class=label_class, progress=step)
            if result is None:
                self.stdout.write(f"{label_class}: nothing annotated yet")
                continue
            self._report(label_class, result)

        if campaign is not None:
            settled = services.campaign_settle(campaign=campaign)
            self.stdout.write(f"settled {settled} submissions")
            effect = selectors.anchoring_effect(campaign=campaign)
            self.stdout.write(
                "anchoring on gold checks: Dice with the suggestion {with_mean} (n={with_n}), "
                "without {without_mean} (n={without_n})".format(**effect)
            )

    def _report(self, label_class, result):
        people = [e for who, e in result.annotators.items() if who != fusion.MODEL]
        weights = sorted(e.weight for e in people)
        review = FusedLabel.objects.filter(task__label_class=label_class, review=FusedLabel.Review.NEEDED).count()
        self.stdout.write(
            f"{label_class}: {len(result.images)} images, {len(people)} annotators, "
            f"{result.iterations} EM rounds ({'converged' if result.converged else 'not converged'}); "
            f"median weight {weights[len(weights) // 2]:.2f}, {sum(w < 0.1 for w in weights)} near zero; "
            f"{review} labels need review"
        )
        images = consensus.fusion_images(label_class)
        bias = fusion.model_bias(images, result)
        for against in ("gold", "fused"):
            row = bias[against]
            if row["images"]:
                area = "n/a" if row["area_error"] is None else f"{row['area_error']:+.1%}"
                self.stdout.write(
                    f"  AI model vs {against}: Dice {row['dice']:.3f}, area error {area} on {row['images']} images"
                )
