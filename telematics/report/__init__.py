"""Reports for safety managers: did the interventions work?"""

from telematics.report.interventions import Row, report_interventions
from telematics.report.recurrence import Recurrence, evaluate_outcomes, recurrence

__all__ = ["Recurrence", "Row", "evaluate_outcomes", "recurrence", "report_interventions"]
