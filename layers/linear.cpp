#include "layers/linear.h"
